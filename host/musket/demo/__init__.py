"""`musket demo`: the product's whole life on a small fleet, in one command.

Stages, each a module: `factory` (build, flash, SIMs and plans, provision, end-of-line),
then `report`, whose checks compare what the registry and the broker hold with what the
simulation did. `run` starts every process through `Unit`, `Mosquitto` or the loaders and
ends them all before it returns, also on an error or Ctrl-C.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console

from musket.demo import checks as checks_
from musket.demo import factory, field, report
from musket.demo.units import make_fleet
from musket.mosquitto import Mosquitto
from musket.registry import Registry


def run(workdir: Path | str | None = None, console: Console | None = None) -> dict:
    """Runs every stage; returns the report (figures and checks) for tests and scripts."""
    console = console or Console()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="musket-demo-"))
    # Same seed, same report: each run starts from an empty work folder.
    for leftover in ("units", "build", "broker", "registry.sqlite"):
        path = workdir / leftover
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    units = make_fleet(workdir)
    mosquitto = Mosquitto(workdir / "broker")
    # The service users' passwords live only in this process and the broker's hashes.
    passwords = {user: secrets.token_urlsafe(18) for user in factory.SERVICE_USERS}
    registry = Registry.open(workdir / "registry.sqlite", migrate=True)
    try:
        console.rule("musket demo: six units, three boards, one command")
        console.print("[bold]1. factory[/]: build, flash in parallel with esptool, SIMs and "
                      "plan, provision, end-of-line test")
        made = factory.run(units, registry, mosquitto, passwords, workdir, console)
        console.print("[bold]2. field[/]: the fleet service takes a virtual day of every unit "
                      "(MicroPython, full speed)")
        service = field.FleetService(workdir / "registry.sqlite", mosquitto.port,
                                     passwords["fleet"], workdir)
        try:
            lived = field.live_a_day([u for u in units if u.device_id], console)
        finally:
            service.stop()
        live = [u for u in units if u.device_id]
        checks = checks_.check_factory(units, made, registry) + checks_.check_field(
            live, lived, registry)
        return report.show(units, made, checks, registry, workdir, console,
                           time.monotonic() - started)
    finally:
        for unit in units:
            unit.power_off()
        mosquitto.stop()
        registry.close()
