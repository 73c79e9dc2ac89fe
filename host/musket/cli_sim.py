"""`musket sim run` and `musket sim serve`: virtual devices from the command line (the library
is musket_sim). Registered on the main group in cli.py, with `musket sim fleet`."""

from __future__ import annotations

import calendar
import json
import os
import signal
import sys

import click
from rich.console import Console
from rich.table import Table

from musket.cli_params import duration as _duration
from musket.cli_params import size as _size
from musket.errors import ExitCode


@click.group("sim")
def sim() -> None:
    """Run virtual devices: the firmware, unchanged, on a modelled board.

    \b
    Example:
      musket sim run --board esp32s3-bg95 --for 1d --interpreter cpython
    """


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def _speed(ctx, param, value):
    if value is None or value == "max":
        return value
    try:
        speed = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number nor 'max'") from None
    if speed <= 0:
        raise click.BadParameter("must be above 0")
    return speed


@sim.command("run")
@click.option("--board", default="esp32-sim7080g", show_default=True,
              help="Board name from boards/ (see `musket boards`).")
@click.option("--for", "span", default="1h", show_default=True, callback=_duration,
              help="Virtual time to run: 90s, 15m, 2h30m, 1d.")
@click.option("--interpreter", type=click.Choice(["micropython", "cpython"]),
              default="micropython", show_default=True)
@click.option("--heap", default=None, callback=_size,
              help="MicroPython heap for the firmware, e.g. 64K. Default: the board's heap "
                   "(see `musket boards`).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed for everything random in the run; same seed, same run.")
@click.option("--ota/--no-ota", default=False, help="Use the board's OTA partition layout.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Keep the flash image and console log here (default: a temporary folder).")
@click.option("--fresh/--keep-flash", default=True, show_default=True,
              help="Start from a freshly built flash image, or boot the one in --workdir.")
@click.option("--console", "with_console", is_flag=True,
              help="Put the device's console on a pty and print `console: <path>` first.")
@click.option("--speed", default=None, callback=_speed,
              help="Virtual seconds per wall second, or 'max'. Default: max, or 1 with "
                   "--console.")
@click.option("--cut-at-write", type=click.IntRange(min=1), default=None,
              help="Cut power at this flash write (counted from the start of the run).")
@click.option("--cut-chance", type=click.FloatRange(0, 1), default=0.0,
              help="Chance that any one flash write loses power, drawn from --seed.")
@click.option("--scenario", default="good", show_default=True,
              help="What the radio network does: a ready scenario's name (good, denied, "
                   "hang, drop, ...; docs/modem.md lists them all), a JSON or TOML file, or "
                   "'none' for a board whose modem never answers.")
@click.option("--usage", default="day", show_default=True,
              help="What the appliance around the sensors does: a ready usage scenario "
                   "(day, busy, faults), a JSON or TOML file, or 'none' for bare sensor "
                   "inputs.")
@click.option("--carrier-csv", type=click.Path(dir_okay=False), default=None,
              help="Write the carrier's usage file for the run (iccid,day,bytes: the modem "
                   "model's air bytes per SIM per day), as `musket fleet carrier-import` "
                   "reads it.")
@click.option("--carrier-states", type=click.Path(dir_okay=False), default=None,
              help="The carrier's SIM-state file that `musket fleet sims pause|resume "
                   "--carrier-states` writes: a SIM that is not active there gets no data.")
@click.option("--start", "start_day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="The virtual calendar's first day (UTC), where the run's clock starts at "
                   "midnight. Default: 2026-01-01, the same in every run.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def sim_run(board, span, interpreter, heap, seed, ota, workdir, fresh, with_console, speed,
            cut_at_write, cut_chance, scenario, usage, carrier_csv, carrier_states, start_day,
            as_json):
    """Run one virtual device for a span of virtual time.

    \b
    Examples:
      musket sim run --interpreter micropython --for 1d --json
      musket sim run --heap 64K --for 1d
      musket sim run --for 1d --cut-chance 0.2 --seed 3
      musket sim run --for 1d --carrier-csv usage.csv
      musket sim run --for 1d --carrier-states carrier-states.json
      musket sim run --for 1d --start 2026-12-04
    """
    from musket_sim import VirtualDevice
    from musket_sim.device import DEFAULT_EPOCH
    from musket_sim.scenario import load_scenario
    from musket_sim.usage_scenario import load_usage

    modem = None if scenario == "none" else load_scenario(scenario)
    if carrier_states and modem is not None:
        modem["carrier_states"] = os.path.abspath(carrier_states)
    epoch = DEFAULT_EPOCH if start_day is None else calendar.timegm(start_day.timetuple())
    device = VirtualDevice(board, workdir, interpreter=interpreter, heap=heap, seed=seed,
                           ota=ota, modem=modem, epoch=epoch,
                           usage=None if usage == "none" else load_usage(usage))
    if fresh or not device.image.exists():
        device.create_flash()
    if speed is None:
        speed = 1.0 if with_console else "max"
    # Ctrl-C (or SIGTERM from a script) switches the device off; the summary still prints.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if with_console:
            click.echo(f"console: {device.open_console()}")
            sys.stdout.flush()
        result = device.run(span, speed=None if speed == "max" else speed,
                            cut_at_write=cut_at_write, cut_chance=cut_chance)
    finally:
        device.close()
        signal.signal(signal.SIGTERM, previous)
    if carrier_csv:
        from musket_sim import carrier

        carrier.write_usage_csv(carrier_csv, carrier.billed_rows(result.modem))
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _print_run(result)
    if result.errors:
        sys.exit(ExitCode.DEVICE_ERRORS)


def _print_run(result) -> None:
    console = Console()
    table = Table(title=f"virtual device: {result.board} on {result.interpreter}",
                  show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("virtual time", f"{result.virtual_seconds:,.0f} s")
    table.add_row("wall time", f"{result.wall_seconds:.2f} s")
    table.add_row("speed", f"{result.virtual_seconds / max(result.wall_seconds, 1e-9):,.0f}x")
    table.add_row("boots", str(result.boots))
    if result.heap_peak_bytes is not None:
        table.add_row("heap peak", f"{result.heap_peak_bytes:,} bytes")
    table.add_row("flash writes", f"{result.flash_writes:,}")
    if result.modem:
        air = sum(b.get("air_up", 0) + b.get("air_down", 0) for b in result.modem)
        table.add_row("modem", f"{result.modem[-1].get('family')}, {air:,} bytes over the air")
    table.add_row("ended by", result.exit_reason)
    table.add_row("console log", result.console_log)
    table.add_row("errors", str(len(result.errors)) if result.errors else "none")
    console.print(table)
    for error in result.errors:
        console.print(f"[red]error:[/] {error}")


@sim.command("serve")
@click.option("--board", default="esp32-sim7080g", show_default=True,
              help="Board name from boards/ (see `musket boards`).")
@click.option("--loader-port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Loopback TCP port for the ROM loader (0: any free port).")
@click.option("--pty", "use_pty", is_flag=True,
              help="Serve the ROM loader on a pty instead of a TCP port.")
@click.option("--flash", "flash_state", type=click.Choice(["blank", "fresh", "keep"]),
              default="blank", show_default=True,
              help="Start erased (a new chip), with a freshly built image, or with the "
                   "image in --workdir.")
@click.option("--interpreter", type=click.Choice(["micropython", "cpython"]),
              default="micropython", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed for the run; also the last three bytes of the device's MAC.")
@click.option("--ota/--no-ota", default=False, help="Use the board's OTA partition layout.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Keep the flash image and console log here (default: a temporary folder).")
@click.option("--for", "span", default="1d", show_default=True, callback=_duration,
              help="Virtual time each boot of the flashed app may run.")
@click.option("--speed", default="1", show_default=True, callback=_speed,
              help="Virtual seconds per wall second while the app runs, or 'max'.")
@click.option("--scenario", default="good", show_default=True,
              help="What the radio network does (as for `musket sim run`), or 'none'.")
def sim_serve(board, loader_port, use_pty, flash_state, interpreter, seed, ota, workdir, span,
              speed, scenario):
    """Put a virtual device on the bench: its ROM loader for esptool, its console for
    mpremote. It waits in download mode; once a host has flashed it and closed the loader
    port, it boots what was written. Connecting to the loader port again resets it into
    download mode. Runs until interrupted.

    \b
    Example:
      musket sim serve --loader-port 0 --seed 7
      esptool --chip esp32 --port socket://127.0.0.1:PORT --before no-reset \\
          -b 921600 write-flash 0x0 build/merged.bin
    """
    from musket_sim import VirtualDevice
    from musket_sim.scenario import load_scenario
    from musket_sim.station import Station

    modem = None if scenario == "none" else load_scenario(scenario)
    device = VirtualDevice(board, workdir, interpreter=interpreter, seed=seed, ota=ota,
                           modem=modem)
    if flash_state == "blank" or (flash_state == "keep" and not device.image.exists()):
        device.erase_flash()
    elif flash_state == "fresh":
        device.create_flash()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    station = Station(device, loader_port=loader_port, use_pty=use_pty)
    console = Console(soft_wrap=True)

    def report(what, detail):
        if what == "flashed":
            written = sum(length for _, length in detail.writes)
            console.print(f"flashed: {written:,} bytes in {len(detail.writes)} region(s) at "
                          f"{detail.baud} baud ({'stub' if detail.stub else 'ROM'}); booting",
                          markup=False, highlight=False)
        else:
            console.print(f"stopped: {detail.exit_reason}, {detail.boots} boot(s), "
                          f"{detail.virtual_seconds:,.0f} virtual s"
                          + "".join(f"\nerror: {e}" for e in detail.errors),
                          markup=False, highlight=False)
        sys.stdout.flush()

    try:
        click.echo(f"loader: {station.loader_url}")
        click.echo(f"console: {station.console_path}")
        click.echo("mac: " + ":".join("%02x" % b for b in device.mac))
        click.echo(f"flash: {device.image}")
        sys.stdout.flush()
        station.serve(span, None if speed == "max" else speed, report)
    except KeyboardInterrupt:
        pass
    finally:
        station.close()
        signal.signal(signal.SIGTERM, previous)
