"""The `musket` command: thin wrappers that parse options and call the library."""

from __future__ import annotations

import json
import signal
import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from musket import __version__
from musket.errors import ExitCode, MusketError


def _print_errors(messages: list[str], hint: str | None) -> None:
    # One line each, never wrapped, and the message is text, not rich markup: a board name
    # or a path may contain brackets.
    err = Console(stderr=True, soft_wrap=True)
    for message in messages:
        err.print("[bold red]error:[/] ", end="")
        err.print(message, markup=False, highlight=False)
    if hint:
        err.print("hint: " + hint, markup=False, highlight=False)


def _fail(message: str, hint: str | None, code: int) -> None:
    _print_errors([message], hint)
    sys.exit(code)


class MusketGroup(click.Group):
    """Turns musket's errors into one readable line, their hint and their exit code, never a
    traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MusketError as e:
            _fail(str(e), e.hint, e.exit_code)


@click.group(cls=MusketGroup)
@click.version_option(__version__, prog_name="musket")
def main() -> None:
    """musket: build, flash, provision, simulate and run cellular IoT devices.

    \b
    Example:
      musket demo
      musket sim run --for 1d --json
    """


@main.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Keep the demo's registry, broker and units here (emptied first).")
def demo_cmd(workdir):
    """The product's whole life on six virtual units: factory, field, service, report.

    \b
    Example:
      musket demo
    """
    from musket import demo

    # SIGTERM (a script, a CI timeout) ends the demo as Ctrl-C does: every process it
    # started is stopped on the way out.
    from musket.cli_sim import _interrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        ok = demo.run(workdir)["ok"]
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not ok:
        sys.exit(ExitCode.FAILED)


@main.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def boards_cmd(as_json):
    """List the boards musket supports (one file each in boards/).

    \b
    Example:
      musket boards
    """
    from musket.boards import BoardError, list_boards, load_board

    boards, bad = [], []
    for name in list_boards():
        try:
            boards.append(load_board(name))
        except BoardError as e:
            bad.append(e)
    _list_boards(boards, as_json)
    # The good boards stay usable; each bad file gets its own line and the exit code says so.
    if bad:
        _print_errors([str(e) for e in bad], "fix or remove the board files named above")
        sys.exit(BoardError.exit_code)


def _list_boards(boards, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([
            {"name": b.name, "chip": b.chip, "modem": b.modem.family, "flash_size": b.flash_size,
             "heap": b.heap, "description": b.description} for b in boards], indent=2))
        return
    table = Table(title="boards")
    for column in ("name", "chip", "modem", "flash", "heap", "description"):
        table.add_column(column)
    for b in boards:
        table.add_row(b.name, b.chip, b.modem.family, f"{b.flash_size >> 20} MB",
                      f"{b.heap >> 10}K", b.summary)
    Console().print(table)


@main.command("build")
@click.option("--board", default="esp32-sim7080g", show_default=True,
              help="Board name from boards/ (see `musket boards`).")
@click.option("--micropython", "micropython", required=True,
              help="MicroPython firmware for the board: the release .bin (bootloader, "
                   "partition table and app in one), or an app .bin with --bootloader.")
@click.option("--bootloader", default=None,
              help="Second-stage bootloader .bin, when --micropython is an app image.")
@click.option("--ota/--no-ota", default=False, help="Use the board's OTA partition layout.")
@click.option("--config", "config_file", default=None,
              help="One device's data as JSON ({\"config\": {...}, \"secrets\": {...}, "
                   "\"ca_pem\": \"...\"}), put on the filesystem image.")
@click.option("--device-config", "device_dir", default=None,
              help="A folder of <name>.json device files: one filesystem and merged image "
                   "each, under devices/<name>/.")
@click.option("--keys", "keys_dir", default=None,
              help="An update key store (`musket keys`): its active and trusted public keys "
                   "go on the filesystem, so the units take the updates they sign. Without "
                   "it, the units refuse every update.")
@click.option("--out", "out_dir", default="build", show_default=True,
              help="Output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def build_cmd(board, micropython, bootloader, ota, config_file, device_dir, keys_dir, out_dir,
              as_json):
    """Build the flash images for a board: compiled firmware, filesystem, merged image.

    \b
    Example:
      musket build --board esp32-sim7080g \\
          --micropython ESP32_GENERIC-20250415-v1.28.0.bin --keys keys --out build
    """
    from musket import build
    from musket.ota.keys import KeyStore

    device = build.load_device(config_file) if config_file else None
    devices = build.load_devices(device_dir) if device_dir else []
    trusted = KeyStore(keys_dir).device_file() if keys_dir else None
    result = build.build(board, micropython, out_dir, bootloader=bootloader, ota=ota,
                         device=device, devices=devices, trusted_keys=trusted)
    if as_json:
        click.echo(json.dumps(result.manifest, indent=2))
        return
    _print_build(result)


def _print_build(result) -> None:
    manifest = result.manifest
    table = Table(title=f"{manifest['board']} ({manifest['chip']}, {manifest['layout']} layout, "
                        f"firmware {manifest['firmware']['describe'] or 'not in git'})")
    for column in ("piece", "offset", "size", "sha256"):
        table.add_column(column, justify="right" if column in ("offset", "size") else "left")
    for piece in manifest["pieces"]:
        table.add_row(piece["file"], f"{piece['offset']:#08x}", f"{piece['size']:,}",
                      piece["sha256"][:16])
    merged = manifest["merged"]
    table.add_row(merged["file"], f"{merged['offset']:#08x}", f"{merged['size']:,}",
                  merged["sha256"][:16], style="bold")
    console = Console()
    console.print(table)
    for device in manifest["devices"]:
        console.print(f"device {device['name']}: devices/{device['name']}/"
                      f"{device['merged']['file']}")
    console.print(f"written to {result.out_dir} (manifest.json lists every piece)")


@main.command("flash")
@click.argument("build_dir", default="build")
@click.option("--port", "ports", multiple=True,
              help="Serial port to flash (repeat for several); a pyserial URL such as "
                   "socket://host:port works too.")
@click.option("--all", "all_ports", is_flag=True,
              help="Flash every serial port with an ESP32 USB bridge (or matching --match).")
@click.option("--match", default=None, help="With --all: ports whose path matches this glob.")
@click.option("--baud", default=921600, show_default=True, type=int,
              help="Baud rate after connecting (the ROM loader starts at 115200).")
@click.option("--erase-data", is_flag=True,
              help="Rewrite the filesystem and erase NVS: counters, config and credentials "
                   "are lost; the unit must be provisioned again.")
@click.option("--no-stub", is_flag=True, help="Talk to the ROM loader only (slower).")
@click.option("--log-dir", default=None,
              help="Where each port's esptool log goes (default: BUILD_DIR/logs).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def flash_cmd(build_dir, ports, all_ports, match, baud, erase_data, no_stub, log_dir, as_json):
    """Flash a build to many boards at once; the units keep their data.

    A unit whose filesystem partition is blank gets the build's filesystem; a unit that has
    one keeps it (counters, config, credentials), unless --erase-data.

    \b
    Examples:
      musket flash build --port /dev/ttyUSB0 --port /dev/ttyUSB1
      musket flash build --all --json
    """
    from musket import flash

    plan = flash.Plan.load(build_dir)  # the whole build is checked before any port is opened
    chosen = list(ports)
    if all_ports:
        chosen += [p for p in flash.find_ports(match) if p not in chosen]
    if not chosen:
        raise flash.BadPorts("no port to flash",
                             hint="give --port (repeat it for several), or --all with boards "
                                  "attached")
    options = dict(baud=baud, erase_data=erase_data, stub=not no_stub, log_dir=log_dir)
    if as_json:
        results = flash.flash_ports(chosen, plan, **options)
        click.echo(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        results = _flash_with_bars(flash, chosen, plan, options)
        _print_flash(results)
    if not all(r.ok for r in results):
        failed = flash.PortsFailed(results)
        # A line per failed port, the hint their causes share, the exit code they share.
        _print_errors(failed.lines, failed.hint)
        sys.exit(failed.exit_code)


def _flash_with_bars(flash, ports, plan, options):
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(TextColumn("{task.fields[port]}"), BarColumn(), DownloadColumn(),
                        TextColumn("{task.description}"), TimeElapsedColumn())
    tasks = {port: progress.add_task("waiting", total=None, port=port) for port in ports}

    def on_progress(port, done, total, stage):
        progress.update(tasks[port], completed=done, total=total or None, description=stage)

    with progress:
        return flash.flash_ports(ports, plan, on_progress=on_progress, **options)


def _print_flash(results) -> None:
    table = Table(title="musket flash")
    for column in ("port", "chip", "MAC", "result", "filesystem", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for r in results:
        # Text, not markup: an error message may hold brackets.
        outcome = Text("ok", style="green") if r.ok else Text.assemble(("failed", "red"),
                                                                       f": {r.error}")
        table.add_row(r.port, r.chip or "-", r.mac or "-", outcome, r.filesystem or "-",
                      f"{r.seconds:.1f}")
    Console().print(table)  # each failure and its log follow on stderr


# The factory line's provisioning and registry commands live in their own module.
from musket.cli_registry import provision_cmd, registry_group  # noqa: E402

main.add_command(provision_cmd)
main.add_command(registry_group)

# Update keys and bundles, likewise.
from musket.cli_ota import keys_group, ota_group  # noqa: E402

main.add_command(keys_group)
main.add_command(ota_group)

# Virtual devices, and many lightweight ones against a broker.
from musket.cli_sim import sim  # noqa: E402
from musket.cli_simfleet import sim_fleet_cmd  # noqa: E402

main.add_command(sim)
sim.add_command(sim_fleet_cmd)

# The fleet service and its views, likewise.
from musket.cli_fleet import fleet_group  # noqa: E402

main.add_command(fleet_group)

# The technician's console, likewise.
from musket.cli_console import console_group  # noqa: E402
from musket.cli_factory import factory_group  # noqa: E402

main.add_command(console_group)
main.add_command(factory_group)

# The services on the fleet's data, likewise.
from musket.cli_services import services_group  # noqa: E402

main.add_command(services_group)


if __name__ == "__main__":
    main()
