"""The `musket` command: thin wrappers that parse options and call the library."""

from __future__ import annotations

import json
import signal
import sys

import click
from rich.console import Console
from rich.table import Table

from musket import __version__
from musket.errors import MusketError
from musket.units import parse_duration, parse_size

_EXIT_ERROR = 1
_EXIT_DEVICE_ERRORS = 3  # 2 is click's usage error


def _fail(message: str, hint: str | None = None) -> None:
    # One line each, never wrapped, and the message is text, not rich markup: a board name
    # or a path may contain brackets.
    err = Console(stderr=True, soft_wrap=True)
    err.print("[bold red]error:[/] ", end="")
    err.print(message, markup=False, highlight=False)
    if hint:
        err.print("hint: " + hint, markup=False, highlight=False)
    sys.exit(_EXIT_ERROR)


class MusketGroup(click.Group):
    """Turns musket's errors into one readable line and an exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MusketError as e:
            _fail(str(e))


@click.group(cls=MusketGroup)
@click.version_option(__version__, prog_name="musket")
def main() -> None:
    """musket: build, flash, provision, simulate and run cellular IoT devices.

    \b
    Example:
      musket demo
      musket sim run --for 1d --json
    """


@main.group()
def sim() -> None:
    """Run virtual devices: the firmware, unchanged, on a modelled board.

    \b
    Example:
      musket sim run --board esp32s3-bg95 --for 1d --interpreter cpython
    """


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def _duration(ctx, param, value):
    try:
        return parse_duration(value)
    except MusketError as e:
        raise click.BadParameter(str(e)) from None


def _size(ctx, param, value):
    try:
        return parse_size(value)
    except MusketError as e:
        raise click.BadParameter(str(e)) from None


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
@click.option("--heap", default="64K", show_default=True, callback=_size,
              help="MicroPython heap size (an ESP32 has about 64K free for Python objects).")
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
              help="What the radio network does: a ready scenario's name (good, "
                   "no-coverage-30m, denied, sms-only, hang, drop, sim-swap, stale-apn), a "
                   "JSON or TOML file, or 'none' for a board whose modem never answers.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def sim_run(board, span, interpreter, heap, seed, ota, workdir, fresh, with_console, speed,
            cut_at_write, cut_chance, scenario, as_json):
    """Run one virtual device for a span of virtual time.

    \b
    Examples:
      musket sim run --interpreter micropython --heap 64K --for 1d --json
      musket sim run --for 1d --cut-chance 0.2 --seed 3
    """
    from musket_sim import VirtualDevice
    from musket_sim.scenario import load_scenario

    modem = None if scenario == "none" else load_scenario(scenario)
    device = VirtualDevice(board, workdir, interpreter=interpreter, heap=heap, seed=seed,
                           ota=ota, modem=modem)
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
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _print_run(result)
    if result.errors:
        sys.exit(_EXIT_DEVICE_ERRORS)


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


@main.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Keep the demo's flash image and console log here.")
def demo_cmd(workdir):
    """Run the main job end to end on a virtual device and say what happened.

    \b
    Example:
      musket demo
    """
    from musket import demo

    figures = demo.run(workdir)
    if figures["day_errors"] or figures["cut_errors"]:
        sys.exit(_EXIT_DEVICE_ERRORS)


@main.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def boards_cmd(as_json):
    """List the boards musket supports (one file each in boards/).

    \b
    Example:
      musket boards
    """
    from musket.boards import list_boards, load_board

    boards = [load_board(name) for name in list_boards()]
    if as_json:
        click.echo(json.dumps([
            {"name": b.name, "chip": b.chip, "modem": b.modem.family, "flash_size": b.flash_size,
             "description": b.description} for b in boards], indent=2))
        return
    table = Table(title="boards")
    for column in ("name", "chip", "modem", "flash", "description"):
        table.add_column(column)
    for b in boards:
        table.add_row(b.name, b.chip, b.modem.family, f"{b.flash_size >> 20} MB", b.summary)
    Console().print(table)


if __name__ == "__main__":
    main()
