"""`musket demo`: the product's whole life on a small fleet, in one command.

Stages, each a module: `factory` (build, flash, SIMs and plans, provision, end-of-line),
`field` (the fleet service takes a virtual day of every unit), `service` (rules, orders,
tickets, bills; a technician's visit) and `update` (two signed releases in stages), then
`report`, whose checks (`checks`) compare what the registry and the broker hold with what the
simulation did. `run` starts every process through `Unit`, `Mosquitto`, `FleetService` or the
loaders and ends them all before it returns, also on an error or Ctrl-C.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from musket.demo import checks as checks_
from musket.demo import factory, field, report, service, update
from musket.demo.units import make_fleet
from musket.mosquitto import Mosquitto
from musket.ota.keys import KeyStore
from musket.registry import Registry
from musket.services import views as service_views

VISIT_AFTER = timedelta(hours=1)  # the technician's visit, on the services' clock


def run(workdir: Path | str | None = None, console: Console | None = None) -> dict:
    """Runs every stage; returns the report (figures and checks) for tests and scripts."""
    console = console or Console()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="musket-demo-"))
    # Same seed, same report: each run starts from an empty work folder (but for its keys).
    for leftover in ("units", "build", "broker", "registry.sqlite", "releases",
                     "fleet-serve.log"):
        path = workdir / leftover
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # The units' virtual day is today (UTC), so that what the fleet stamps on arrival and
    # what the devices stamp fall in the same day and month for the services and billing.
    today = datetime.now(UTC).date()
    units = make_fleet(workdir, today.isoformat())
    mosquitto = Mosquitto(workdir / "broker")
    # The service users' passwords live only in this process and the broker's hashes.
    passwords = {user: secrets.token_urlsafe(18) for user in factory.SERVICE_USERS}
    registry = Registry.open(workdir / "registry.sqlite", migrate=True)
    # The line's update keys: the units are built trusting them, the releases signed with them.
    # Kept from run to run, as a line keeps its keys.
    keys = KeyStore(workdir / "keys")
    if not keys.trusted():
        keys.generate()
    try:
        console.rule("musket demo: six units, three boards, one command")
        console.print("[bold]1. factory[/]: build, flash in parallel with esptool, SIMs and "
                      "plan, provision, end-of-line test")
        made = factory.run(units, registry, mosquitto, passwords, keys, workdir, console)
        checks = checks_.check_factory(units, made, registry)
        live = [u for u in units if u.device_id]
        console.print("[bold]2. field[/]: the fleet service takes a virtual day of every unit "
                      "(MicroPython, full speed)")
        fleet_service = field.FleetService(workdir / "registry.sqlite", mosquitto.port,
                                           passwords["fleet"], workdir)
        try:
            lived = field.live_a_day(live, console)
        finally:
            fleet_service.stop()
        checks += checks_.check_field(live, lived, registry)
        field.import_carrier_usage(live, registry)
        day_end = service.end_of_day(today, lived.day_s)
        cost_checks, sims = checks_.check_data_cost(live, registry, day_end - timedelta(
            seconds=1))
        checks += cost_checks
        console.print("[bold]3. service[/]: rules on what the fleet committed; a technician "
                      "at the unit with the ticket; updates in stages")
        acted = service.act(live, registry, workdir, day_end, factory.LINE)
        # The fleet service hears the visit and the updates too (the units' firmware versions).
        fleet_service = field.FleetService(workdir / "registry.sqlite", mosquitto.port,
                                           passwords["fleet"], workdir)
        try:
            ticket = next((t for t in acted.tickets
                           if any(c.startswith("SENSOR_") for c in t["codes"])), None)
            if ticket is not None:
                unit = next(u for u in live if u.device_id == ticket["device_id"])
                acted.visit = service.visit(unit, ticket, registry, day_end + VISIT_AFTER,
                                            console)
                acted.tickets = service_views.tickets(registry.engine)  # closed on site
            checks += checks_.check_service(live, lived, acted)
            console.print("  updates: two signed releases in stages, a canary first: "
                          f"{update.GOOD} for every unit, then {update.BAD}, which cannot "
                          "start")
            updated = update.roll_out(live, registry, mosquitto.port, passwords["ota"], keys,
                                      workdir / "releases", console)
        finally:
            fleet_service.stop()
        checks += checks_.check_updates(live, updated)
        return report.show(units, made, acted, updated, sims, checks, registry, workdir, console,
                           time.monotonic() - started)
    finally:
        try:
            for unit in units:
                unit.power_off()
        finally:
            mosquitto.stop()
            registry.close()
