"""A fleet's week for the team pages' tests and bench, written through the parts' own code: SIMs
through the registry's import, units through the factory's binding, plans through the plan
import, sites through the services' import, and every status and telemetry message through the
fleet service's store (musket.fleet.store.FleetStore.take), received at the week's times.

Orders, tickets and tariffs come from the services' rules engine (musket.services.engine),
run over the product's rules (tests/web/coffee.yaml) at the end of each day of the week.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS / "fleet"))

import fleethelp  # noqa: E402 - the firmware's telemetry codec, as the fleet tests use it

from musket.fleet import plans  # noqa: E402
from musket.fleet.store import FleetStore, Incoming  # noqa: E402
from musket.identity import luhn_check_digit  # noqa: E402
from musket.registry import Actor, binding  # noqa: E402
from musket.services import rules, sites  # noqa: E402
from musket.services.engine import RulesEngine  # noqa: E402

ACTOR = Actor("web-tests", "seed")
PLAN = "iot-eu-10mb"
PLANS_TOML = """
[plans.iot-eu-10mb]
monthly_fee = 1.50
included_mb = 10
overage_per_mb = 0.40
pooled = false
currency = "EUR"

[plans.iot-eu-pool-1gb]
monthly_fee = 4.00
included_mb = 1000
overage_per_mb = 0.10
pooled = true
currency = "EUR"
"""
CUSTOMERS = ("cafe-nord", "hotel-sud", "office-ost", "bakery-west")
PRODUCT = "coffee"
SPARE_SIMS = 5
BATCH = 400  # messages per FleetStore.take
BIND_BATCH = 500  # units per binding transaction
# What the devices say, varied by device number so that the pages have something to show.
REBOOT_REASONS = ({"power": 1}, {"power": 1, "wdt": 2}, {"power": 1, "panic": 1})
RULES = Path(__file__).resolve().parent / "coffee.yaml"


def diagnosis(n: int, day: int) -> list[str]:
    """What device n reports on day `day`: every fifth device's modem hangs all week; the one
    before it hangs for the first three days, then is healthy."""
    if n % 5 == 4:
        return ["MODEM_HUNG"]
    if n % 5 == 3 and day < 3:
        return ["MODEM_HUNG", "E31"]
    return []


def device_id(n: int) -> str:
    return f"dev-{n:05d}"


def iccid(n: int) -> str:
    body = f"89490{n:013d}"
    return body + luhn_check_digit(body)


def _imei(n: int) -> str:
    body = f"869715{n:08d}"
    return body + luhn_check_digit(body)


def seed_registry(registry, folder: Path, devices: int) -> None:
    """SIMs (one per device, SPARE_SIMS more in stock), the plan, each device bound to its
    SIM as the factory does, and the devices spread over CUSTOMERS' sites."""
    sims_csv = folder / "web-sims.csv"
    rows = [f"{iccid(n)},{PLAN},inventory" for n in range(devices + SPARE_SIMS)]
    sims_csv.write_text("ICCID,plan,state\n" + "\n".join(rows) + "\n")
    registry.import_sims(sims_csv, ACTOR)
    plan_file = folder / "plans.toml"
    plan_file.write_text(PLANS_TOML)
    plans.import_plans(registry.engine, plan_file)
    for start in range(0, devices, BIND_BATCH):
        with registry.transaction() as conn:
            for n in range(start, min(devices, start + BIND_BATCH)):
                unit = binding.Unit(iccid=iccid(n), imei=_imei(n), imsi=None,
                                    chip_id=f"240ac4{n:06x}", board="esp32-sim7080g")
                plan = binding.BindingPlan(device_id(n), True, None, False, None)
                binding.apply(conn, plan, unit, ACTOR)
    sites_csv = folder / "sites.csv"
    sites_csv.write_text("device_id,customer_id,customer_name,product,location\n" + "".join(
        f"{device_id(n)},{CUSTOMERS[n % len(CUSTOMERS)]},"
        f"{CUSTOMERS[n % len(CUSTOMERS)].replace('-', ' ').title()},{PRODUCT},"
        f"floor {n % 7} room {n % 31}\n" for n in range(devices)))
    sites.import_sites(registry.engine, sites_csv, ACTOR)


def _status(n: int, day: int, online: bool, tx: int, rx: int) -> bytes:
    if not online:
        return b"0"
    status = {"on": 1, "v": 1, "fw": "1.4.%d" % (n % 3), "bc": 3 + day + n % 3,
              "rc": "wdt" if n % 3 == 1 else "power", "rr": REBOOT_REASONS[n % 3],
              "up": 3600, "hp": {"f": 41000 - 97 * (n % 50), "lb": 20000 - 13 * (n % 50)},
              "cn": {"s": 36000, "f": n % 4}, "dx": diagnosis(n, day),
              "tx": tx, "rx": rx}
    if n % 3 == 2:
        status["cr"] = {"t": 1_796_000_000, "e": "MemoryError: uplink"}
    if n % 4 == 0:
        status["im"] = "1.29.0"  # an image update confirmed
    return json.dumps(status).encode()


def seed_week(engine, devices: int, days: int = 7, today: date | None = None) -> int:
    """Each device's days: online at 08:00 with its health and data totals, a telemetry
    message of counted uses (more for some devices than others) at 12:00, offline at 18:00;
    the rules engine's pass at 20:00. Returns the messages taken."""
    store = FleetStore(engine)
    clock = [datetime.now(UTC)]
    rules_engine = RulesEngine(engine, {PRODUCT: rules.load(RULES)}, clock=lambda: clock[0])
    rules_engine.sync_tariffs()
    today = today or datetime.now(UTC).date()
    taken, batch = 0, []
    totals = [0] * devices
    for d in range(days):
        day = datetime.combine(today - timedelta(days=days - 1 - d), datetime.min.time(), UTC)
        for n in range(devices):
            tx, rx = 20_000 * (d + 1) * (1 + n % 4), 9_000 * (d + 1)
            uses = 2 + n % 5 + d % 3  # usage of different intensity per device
            events = [(totals[n] + i + 1, "brews", totals[n] + i + 1) for i in range(uses)]
            totals[n] += uses
            noon = int((day + timedelta(hours=12)).timestamp())
            batch += [
                Incoming(f"d/{device_id(n)}/s", _status(n, d, True, tx, rx), retain=True,
                         received=day + timedelta(hours=8)),
                Incoming(f"d/{device_id(n)}/t", fleethelp.telemetry(d + 1, events, t0=noon),
                         received=day + timedelta(hours=12)),
                Incoming(f"d/{device_id(n)}/s", _status(n, d, False, tx, rx), retain=True,
                         received=day + timedelta(hours=18)),
            ]
            if len(batch) >= BATCH:
                taken += store.take(batch).stored
                batch = []
        if batch:
            taken += store.take(batch).stored
            batch = []
        clock[0] = day + timedelta(hours=20)
        rules_engine.run_once()
    return taken
