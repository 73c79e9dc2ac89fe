"""The report's checks: what the registry and the fleet hold, against what the simulation did
(the fleet as it was made, the usage models' scripts, the modem models' air bytes)."""

from __future__ import annotations

from dataclasses import dataclass

from musket.demo.units import Unit
from musket.fleet import views
from musket.registry import Registry

# The firmware's detectors' thresholds (app/usage.py defaults): a brew draws current for at
# least 10 s, a dispense is at least 20 flow pulses.
BREW_MIN_S = 10
MIN_PULSES = 20
# The device estimates the carrier's bytes from its own traffic (docs/fleet.md, contract C)
# within 1 %; what it last told the fleet is at most one health interval old.
DATA_TOLERANCE = 0.05


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str


def check_factory(units: list[Unit], made, registry: Registry) -> list[Check]:
    """The factory's results against the fleet as it was made: every unit flashed; every unit
    whose SIM was free bound to its own modem's ICCID and IMEI; the unit whose SIM another
    unit holds refused for that reason; every provisioned unit passed its end-of-line test."""
    checks = []
    flashed = [n for n, r in made.flashed.items() if r.ok]
    checks.append(Check("flashed with esptool", len(flashed) == len(units),
                        f"{len(flashed)} of {len(units)}"))
    first_holder: dict[str, str] = {}
    for unit in units:
        first_holder.setdefault(unit.spec.iccid, unit.name)
    for unit in units:
        holder = first_holder[unit.spec.iccid]
        if holder == unit.name:
            device = registry.device(unit.device_id) if unit.device_id else None
            ok = (device is not None and device.iccid == unit.spec.iccid
                  and device.imei == unit.spec.imei and device.sim_state == "bound")
            checks.append(Check(f"{unit.name} bound to its SIM and modem", ok,
                                f"ICCID {unit.spec.iccid}, IMEI {unit.spec.imei}" if ok
                                else str(unit.refused)))
        else:
            reason = unit.refused or ""
            ok = unit.device_id is None and unit.spec.iccid in reason
            checks.append(Check(f"{unit.name} refused: its SIM is in {holder}", ok,
                                f"SIM {unit.spec.iccid} already bound" if ok else reason))
    for name, result in sorted(made.eol.items()):
        checks.append(Check(f"{name} end-of-line", result.passed,
                            "passed" if result.passed else ", ".join(result.codes)))
    return checks


def expected_day(unit: Unit, usage: dict, day_s: int) -> tuple[int, float, int]:
    """(brews, litres, uncertain brews) the unit's usage model played in its day."""
    from musket_sim import VirtualDevice
    from musket_sim.usage_scenario import expected_counts, load_usage

    # The usage model's script depends on the seed and the time of day only, not the date.
    settings = VirtualDevice(unit.spec.board, usage=load_usage(usage)).usage_settings()
    brews, ml, uncertain = expected_counts(settings, unit.spec.seed, 0, day_s,
                                           brew_min_s=BREW_MIN_S, min_pulses=MIN_PULSES)
    return brews, ml / 1000, uncertain


def air_bytes(unit: Unit) -> int:
    """What the unit's modem models carried over the air in all its runs (billed bytes)."""
    return sum(sum(modem["billed"].get(unit.spec.iccid, {}).values())
               for run in unit.runs for modem in run.get("modem", []))


def check_field(units: list[Unit], lived, registry: Registry) -> list[Check]:
    """Counts, troubles and data: the fleet's view against each unit's models."""
    checks = []
    for unit in units:
        detail = views.device_detail(registry.engine, unit.device_id) or {}
        counted = detail.get("counters") or {}
        brews, litres, uncertain = expected_day(unit, lived.usage[unit.name], lived.day_s)
        got_brews, got_litres = int(counted.get("brews", 0)), counted.get("litres", 0.0)
        ok = brews <= got_brews <= brews + uncertain and round(got_litres, 3) == round(litres, 3)
        unit.counted = (got_brews, got_litres, brews, litres)
        checks.append(Check(f"{unit.name} counted what its appliance did", ok,
                            f"fleet {got_brews} brews {got_litres:.3f} l; usage model "
                            f"{brews} brews {litres:.3f} l"
                            + (f" (+{uncertain} uncertain)" if uncertain else "")))
        data = detail.get("data") or {}
        reported = (data.get("tx_total") or 0) + (data.get("rx_total") or 0)
        air = air_bytes(unit)
        unit.data = (reported, air)
        ok = air > 0 and abs(reported - air) <= DATA_TOLERANCE * air
        checks.append(Check(f"{unit.name} data the fleet heard", ok,
                            f"device {reported:,} B; modem model {air:,} B over the air"))
        trouble = lived.trouble[unit.name]
        if "hangs" in trouble:
            day = unit.runs[-1]["modem"][0]
            log = (unit.folder / "console.log").read_text(errors="replace")
            ladder = [step for step in ("resync", "soft_reset", "power_cycle")
                      if f"not answering: {step}" in log]
            ok = day["power_cycles"] >= 2 and ladder and "connected" in log.split(
                "not answering: " + ladder[-1])[-1]
            checks.append(Check(f"{unit.name} hung modem recovered", bool(ok),
                                f"ladder {' → '.join(ladder)}; modem model: "
                                f"{day['power_cycles']} power-ups"))
        if "sensor" in trouble:
            codes = (detail.get("health") or {}).get("diagnosis") or []
            checks.append(Check(f"{unit.name} unplugged sensor reported",
                                "SENSOR_MISSING:sht" in codes, ", ".join(codes) or "none"))
        if "coverage" in trouble:
            log = (unit.folder / "console.log").read_text(errors="replace")
            day = unit.runs[-1]
            checks.append(Check(f"{unit.name} coverage gap ridden out",
                                "connected" in log and not day.get("errors"),
                                "events queued in the gap delivered once (counts above)"))
    return checks


def check_service(units: list[Unit], lived, acted) -> list[Check]:
    """Orders, tickets and statements against the usage models and the units' troubles; the
    technician's visit against the ticket."""
    from datetime import datetime, timedelta
    from decimal import ROUND_HALF_UP, Decimal

    from musket.demo.service import COFFEE_RULES, TECHNICIAN
    from musket.services.rules import parse

    product = parse(COFFEE_RULES)
    beans = product.consumables["beans"]
    checks = []
    for unit in units:
        orders = [o for o in acted.orders if o["device_id"] == unit.device_id]
        ok = len(orders) == 1 and orders[0]["consumable"] == "beans"
        detail = "no order"
        if ok:
            placed = datetime.fromisoformat(orders[0]["placed"])
            runout = datetime.fromisoformat(orders[0]["runout_predicted"])
            ok = placed + timedelta(days=beans.lead_time_days) <= runout
            left = beans.capacity - beans.per_use * unit.counted[2]
            detail = (f"{left:.3f} kg left after {unit.counted[2]} brews; delivery in "
                      f"{beans.lead_time_days} d, run-out {runout:%Y-%m-%d %H:%M}")
        checks.append(Check(f"{unit.name} beans ordered in time", ok, detail))
    unplugged = {u.device_id for u in units if "sensor" in lived.trouble[u.name]}
    ticketed = {t["device_id"] for t in acted.tickets}
    codes = sorted({c for t in acted.tickets for c in t["codes"]})
    checks.append(Check("a ticket for the unplugged sensor, none for the others",
                        ticketed == unplugged and codes == ["SENSOR_MISSING:sht"],
                        ", ".join(codes) or "no ticket"))
    prices = product.tariff["prices"]
    for statement in acted.statements:
        brews = sum(u.counted[2] for u in units if u.spec.customer == statement["customer_id"])
        use = (Decimal(str(prices["brews"])) * brews).quantize(Decimal("0.01"), ROUND_HALF_UP)
        want = max(use, Decimal(str(product.tariff["minimum"])))
        ok = Decimal(str(statement["total"])) == want
        checks.append(Check(f"{statement['customer_id']} billed for its brews", ok,
                            f"{brews} brews x {prices['brews']} = {use}, minimum "
                            f"{product.tariff['minimum']}: {statement['total']} "
                            f"{statement['currency']}"))
    visit = acted.visit
    if visit:
        confirmed = set(visit["ticket_codes"]) <= set(visit["codes_before"])
        checks.append(Check("technician confirmed the ticket's diagnosis on site", confirmed,
                            ", ".join(visit["codes_before"])))
        checks.append(Check("repair proved by the unit's selftest, visit logged on the unit",
                            visit["passed_after"] and visit["logged"],
                            f"selftest {'passed' if visit['passed_after'] else 'failed'}; "
                            f"{TECHNICIAN}'s service mode in the unit's log: "
                            f"{'yes' if visit['logged'] else 'no'}"))
        closed = visit.get("closed") or {}
        ticket = next((t for t in acted.tickets if t["ticket_id"] == visit["ticket"]),
                      {})
        checks.append(Check("ticket closed on site with the repair, audited",
                            bool(closed) and ticket.get("closed") is not None,
                            f"ticket {visit['ticket']}: {closed.get('repair', 'still open')}"))
    else:
        checks.append(Check("technician's visit", False, "no ticket to visit"))
    return checks


def check_data_cost(units: list[Unit], registry: Registry, now) -> tuple[list[Check], list]:
    """Each SIM's month as finance sees it (`musket fleet usage`): the carrier's bytes are the
    modem model's billed bytes of the field day, the cost the plan's fee and overage on the
    device-reported bytes."""
    from musket.fleet.plans import BYTES_PER_MB, month_usage, plans

    sims, _pools = month_usage(registry.engine, now)
    plan = plans(registry.engine)
    checks = []
    by_iccid = {s.iccid: s for s in sims}
    for unit in units:
        day = unit.runs[-1]  # the field day's run (the visit came after the usage file)
        billed = sum(m["billed"].get(unit.spec.iccid, {}).get(now.date().isoformat(), 0)
                     for m in day.get("modem", []))
        sim = by_iccid.get(unit.spec.iccid)
        if sim is None:
            checks.append(Check(f"{unit.name} data cost", False, "no usage for its SIM"))
            continue
        p = plan[sim.plan]
        cost = round(p.monthly_fee + max(0, sim.used_bytes - p.included_bytes)
                     / BYTES_PER_MB * p.overage_per_mb, 4)
        ok = sim.carrier_bytes == billed and sim.cost == cost
        checks.append(Check(f"{unit.name} data cost", ok,
                            f"carrier {sim.carrier_bytes:,} B (modem model {billed:,} B), "
                            f"{sim.cost:.2f} {sim.currency} on {sim.plan}"))
    return checks, sims


def _boot_lines(unit: Unit) -> list[str]:
    log = (unit.folder / "console.log").read_text(errors="replace")
    return [line for line in log.splitlines() if "boot: boot #" in line]


def check_updates(units: list[Unit], updated) -> list[Check]:
    """The campaigns as the registry records them, against what each unit ran: the boot line
    of the image that booted last (each release's line names it) and whether the bad
    release reached any unit but the canary."""
    from musket.demo.update import BAD, GOOD, campaign_name

    checks = []
    good = updated.campaigns.get(campaign_name(GOOD)) or {}
    states = {d["device_id"]: d["state"] for d in good.get("devices", [])}
    running = {u.name: (_boot_lines(u) or [""])[-1] for u in units}
    on_good = [u.name for u in units if running[u.name].endswith(f"release {GOOD}")]
    confirmed = [u.name for u in units if states.get(u.device_id) == "confirmed"]
    resent = sum(s["resent_chunks"] for s in updated.served.get(campaign_name(GOOD), {}).values())
    checks.append(Check(f"release {GOOD} confirmed on every unit",
                        good.get("state") == "completed" and len(confirmed) == len(units)
                        and len(on_good) == len(units),
                        f"campaign {good.get('state')}; confirmed {len(confirmed)} of "
                        f"{len(units)}; booting {GOOD}: {len(on_good)}; chunks sent twice: "
                        f"{resent}"))
    bad = updated.campaigns.get(campaign_name(BAD)) or {}
    states = {d["device_id"]: d["state"] for d in bad.get("devices", [])}
    canary = next((u for u in units if any(d["device_id"] == u.device_id and d["stage"] == 1
                                           for d in bad.get("devices", []))), None)
    rolled_back = canary is not None and states.get(canary.device_id) == "rolled_back"
    failed_boots = 0
    if canary is not None:
        log = (canary.folder / "console.log").read_text(errors="replace")
        failed_boots = log.count("part_left_out")
    offered = set(updated.served.get(campaign_name(BAD), {}))
    others = {d: s for d, s in states.items() if canary is None or d != canary.device_id}
    ok = (bad.get("state") == "aborted" and rolled_back and failed_boots > 0
          and canary is not None and running[canary.name].endswith(f"release {GOOD}")
          and offered == {canary.name} and set(others.values()) == {"skipped"})
    checks.append(Check(f"release {BAD} rolled back on the canary, campaign aborted", ok,
                        f"campaign {bad.get('state')}; "
                        f"{canary.name if canary else 'no canary'}: "
                        f"{states.get(canary.device_id) if canary else '-'} after "
                        f"{failed_boots} failed start(s), back on {GOOD}; "
                        f"offered to {len(offered)} unit(s), the other {len(others)} skipped"))
    return checks
