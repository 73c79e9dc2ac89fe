"""Stage 3, service: the business acts on what the fleet committed, and a technician confirms
a diagnosis on site.

The customers' sites are imported, the coffee machine's rules file (beans by brews, a ticket
for a failed sensor, billing per brew) runs one pass of the services' rules engine and its
dispatcher at the end of the fleet's virtual day, then a technician goes to the unit with the
ticket: a scripted `musket console` session on its console pty (status, selftest with the
sensor still unplugged, service mode, the sensor plugged back in, selftest again).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console

from musket.demo.units import Unit
from musket.errors import MusketError
from musket.registry import Actor
from musket.services import rules, sites, views
from musket.services.dispatch import Dispatcher
from musket.services.engine import RulesEngine
from musket.services.tickets import close_on_site

COFFEE_RULES = """\
# The demo's coffee machines: a 2 kg bean hopper, 12 g a brew, beans delivered next day.
product: coffee
consumables:
  beans: {counter: brews, per_use: 0.012, capacity: 2.0, lead_time_days: 1, margin_days: 1}
tariff: {currency: EUR, minimum: 2, prices: {brews: 0.05}}
rules:
  - name: beans-low
    when: {consumable: beans}
    do:
      - order:
      - sink: {path: orders.jsonl}
  - name: sensor
    when: {diagnosis: "SENSOR_*"}
    do:
      - ticket: {problem: "a sensor has failed"}
"""
CUSTOMER_NAMES = {"cafe-aurora": "Café Aurora", "bistro-lumen": "Bistro Lumen",
                  "office-north": "Office North"}
TECHNICIAN = "Rui Costa"
REPAIR = "temperature sensor's connector reseated; selftest passed"
# The technician plugs the sensor back in five virtual minutes into the visit.
RECONNECT_AT_S = 300
VISIT_SPEED = "20"
VISIT_TIMEOUT_S = 60


@dataclass
class ServiceResult:
    passes: list[dict] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)
    tickets: list[dict] = field(default_factory=list)
    statements: list[dict] = field(default_factory=list)
    period: str = ""
    visit: dict = field(default_factory=dict)


def end_of_day(day: date, day_s: int) -> datetime:
    """The services' clock: the end of the units' virtual day, which began at `day`'s
    midnight (UTC)."""
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(seconds=day_s)


def act(units: list[Unit], registry, workdir: Path, now: datetime, actor) -> ServiceResult:
    """Sites in, one pass of the rules engine and the dispatcher at `now`."""
    # The month the day's use falls in (`now` is its end: midnight, the next day).
    result = ServiceResult(period=datetime.fromtimestamp(now.timestamp() - 1, UTC)
                           .strftime("%Y-%m"))
    sites_csv = workdir / "sites.csv"
    sites_csv.write_text("device_id,customer_id,customer_name,product,location\n" + "".join(
        f"{u.device_id},{u.spec.customer},{CUSTOMER_NAMES[u.spec.customer]},coffee,"
        f"\"{CUSTOMER_NAMES[u.spec.customer]}, {u.name}\"\n" for u in units))
    sites.import_sites(registry.engine, sites_csv, actor)
    rules_dir = workdir / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "coffee.yaml").write_text(COFFEE_RULES)
    products = rules.load_all([rules_dir / "coffee.yaml"])
    engine = RulesEngine(registry.engine, products, clock=lambda: now)
    engine.sync_tariffs()
    result.passes.append(engine.run_once().as_dict())
    sinks = workdir / "sinks"
    sinks.mkdir(exist_ok=True)
    result.passes.append(Dispatcher(registry.engine, sinks, clock=lambda: now).run_once()
                         .as_dict())
    result.orders = views.orders(registry.engine)
    result.tickets = views.tickets(registry.engine)
    result.statements = views.statements(registry.engine, result.period)
    return result


def _console(port: str, *args: str) -> dict:
    """One `musket console` command, as the technician's script runs it; its --json answer."""
    import subprocess

    out = subprocess.run([str(Path(sys.executable).with_name("musket")), "console", *args,
                          "--port", port, "--json"], capture_output=True, text=True,
                         timeout=VISIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    try:
        return {"exit": out.returncode, **json.loads(out.stdout)}
    except json.JSONDecodeError:
        raise MusketError(f"musket console {' '.join(args)}: {out.stderr.strip()[-300:]}"
                          ) from None


def _wait_for(port: str, ready, what: str) -> dict:
    """Asks the unit's status every second until `ready(status)`; returns that status."""
    deadline = time.monotonic() + VISIT_TIMEOUT_S
    while time.monotonic() < deadline:
        status = _console(port, "status")
        if ready(status):
            return status
        time.sleep(1)
    raise MusketError(f"the unit did not get {what} in {VISIT_TIMEOUT_S} s")


def visit(unit: Unit, ticket: dict, registry, at: datetime, console: Console) -> dict:
    """The technician at the unit (at `at` on the services' clock): confirms the ticket's
    diagnosis, plugs the sensor back in, proves the repair with the unit's selftest (service
    mode records the visit on the unit), then closes the ticket with the repair made."""
    usage = unit.folder / "visit-usage.json"
    usage.write_text(json.dumps({"faults": [{"at": 0, "for": RECONNECT_AT_S, "sensor": "sht",
                                             "kind": "nack"}]}))
    port = unit.power_on(speed=VISIT_SPEED, span="1h", usage=str(usage))
    try:
        # The technician looks once the unit is up on the network, as it was in the field.
        _wait_for(port, lambda s: (s.get("uplink") or {}).get("state") == "connected",
                  "online")
        before = _console(port, "selftest")
        codes = [d["code"] for d in before.get("diagnosis", [])]
        console.print(f"  technician {TECHNICIAN} at {unit.name} (ticket "
                      f"{ticket.get('ticket_id')}): selftest "
                      f"{'passed' if before.get('passed') else 'failed'}: {', '.join(codes)}")
        _console(port, "--technician", TECHNICIAN, "service", "on")
        console.print("  service mode on; the temperature sensor's connector was loose: "
                      "plugged back in")
        _wait_for(port, lambda s: (s.get("uptime_s") or 0) > RECONNECT_AT_S,
                  "its sensor back")
        after = _console(port, "selftest")
        _console(port, "service", "off")
        console.print(f"  selftest again: {'passed' if after.get('passed') else 'failed'}; "
                      "service mode off")
    finally:
        unit.power_off()
    closed = None
    if after.get("passed"):
        closed = close_on_site(registry.engine, ticket["ticket_id"], Actor("field", TECHNICIAN),
                               REPAIR, at)
        console.print(f"  ticket {ticket['ticket_id']} closed: {REPAIR}")
    log = (unit.folder / "console.log").read_text(errors="replace")
    return {"unit": unit.name, "ticket": ticket.get("ticket_id"), "codes_before": codes,
            "closed": closed,
            "ticket_codes": ticket.get("codes", []), "passed_after": bool(after.get("passed")),
            "logged": f"service mode on: {TECHNICIAN}" in log
            and f"service mode off: {TECHNICIAN}" in log}
