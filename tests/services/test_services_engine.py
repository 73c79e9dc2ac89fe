"""The rules engine and its dispatcher over the real fleet store, on SQLite and PostgreSQL:
each trigger acts once whatever is replayed or evaluated again, by one engine or two; an order
is placed once per installation; a reboot storm opens one ticket, closed when the device is
healthy again; failed deliveries are retried, then given up with the reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from svchelp import T0, Device, import_sites, status_message, take

from musket.registry.services_schema import svc_outbox, svc_triggers
from musket.services import rules, views
from musket.services.dispatch import Dispatcher
from musket.services.engine import RulesEngine

COFFEE = """\
product: coffee
consumables:
  beans: {counter: brews, per_use: 0.01, capacity: 1.0, lead_time_days: 2, margin_days: 1}
rules:
  - name: descale
    when: {counter: brews, every: 50}
    do: [{sink: {path: descale.jsonl}}]
  - name: beans-low
    when: {consumable: beans}
    do: [{order: }]
  - name: unstable
    when: {reboots: 3, within_hours: 24}
    do: [{ticket: {healthy_after_hours: 1}}, {webhook: {url: "http://127.0.0.1:9/x", tries: 2}}]
"""
SITES = [("dev-a", "acme", "coffee", "Acme HQ, floor 2"),
         ("dev-b", "acme", "coffee", "Acme HQ, lobby")]


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


def engines(registry, clock, n=1):
    products = {"coffee": rules.parse(COFFEE, "coffee.yaml")}
    return [RulesEngine(registry.engine, products, clock) for _ in range(n)]


def count(registry, table) -> int:
    with registry.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_counter_threshold_acts_once_across_replays_restarts_and_two_engines(
        registry, tmp_path):
    import_sites(registry.engine, tmp_path, SITES)
    clock = Clock(T0)
    one, two = engines(registry, clock, 2)
    a = Device("dev-a")
    first = a.use("brews", 60, T0)
    take(registry.engine, first)
    results = [one.run_once()]  # 50
    take(registry.engine, first)  # replayed: the store drops it
    results.append(two.run_once())
    assert results[-1].triggers == 0
    take(registry.engine, a.use("brews", 45, T0 + 3600))  # 105: crosses 100
    again = engines(registry, clock)[0]  # a restarted engine
    results += [two.run_once(), again.run_once(), one.run_once()]
    # every trigger stored acted once, in whichever engine stored it
    assert sum(r.triggers for r in results) == count(registry, svc_triggers)
    with registry.engine.connect() as conn:
        fired = sorted(conn.execute(select(svc_triggers.c.occurrence).where(
            svc_triggers.c.rule == "coffee/descale")).scalars())
    assert fired == ["100", "50"]
    out = Dispatcher(registry.engine, tmp_path, clock=clock)
    assert out.run_once().delivered == 2
    assert out.run_once().delivered == 0
    lines = [json.loads(x) for x in (tmp_path / "descale.jsonl").read_text().splitlines()]
    assert [x["crossed"] for x in lines] == [50, 100]
    assert lines[0]["key"] == "coffee/descale/dev-a/50/0" and lines[0]["location"]


def test_beans_are_ordered_once_before_they_run_out_and_again_after_installing(
        registry, tmp_path):
    import_sites(registry.engine, tmp_path, SITES)
    clock = Clock(T0)
    (engine,) = engines(registry, clock)
    b = Device("dev-b")
    day = 86400
    for n in range(8):  # 15 brews a day: 100 last 6.7 days; ordered when 3 days are left
        clock.t = T0 + n * day + 3600
        take(registry.engine, b.use("brews", 15, clock.t - 60))
        engine.run_once()
        placed = views.orders(registry.engine)
        if placed:
            break
    (order,) = placed
    assert b.totals["brews"] * 0.01 < 1.0  # placed before the beans ran out
    runout = datetime.fromisoformat(order["runout_predicted"].replace("Z", "+00:00"))
    arrives = datetime.fromisoformat(order["placed"].replace("Z", "+00:00")) + timedelta(days=2)
    assert arrives < runout
    engine.run_once()
    assert len(views.orders(registry.engine)) == 1
    views.set_order_state(registry.engine, order["order_id"], "installed", "ana")
    take(registry.engine, b.use("brews", 5, clock.t))
    engine.run_once()
    assert len(views.orders(registry.engine)) == 1  # a full hopper again: nothing due


def test_three_unexpected_reboots_in_a_day_open_one_ticket_closed_when_healthy(
        registry, tmp_path):
    import_sites(registry.engine, tmp_path, SITES)
    clock = Clock(T0)
    one, two = engines(registry, clock, 2)
    hour = 3600
    take(registry.engine, [status_message("dev-a", T0, 1, {"power-on": 1}, 10)])
    one.run_once()
    for n in range(1, 5):  # four watchdog resets, each reported by the next status
        clock.t = T0 + n * hour
        take(registry.engine, [status_message("dev-a", clock.t, 1 + n,
                                              {"power-on": 1, "watchdog": n}, 5,
                                              codes=["MODEM_HUNG"])])
        one.run_once()
        two.run_once()
    (ticket,) = views.tickets(registry.engine)
    assert ticket["closed"] is None and ticket["codes"] == ["MODEM_HUNG"]
    assert "modem board" in ticket["parts"] and ticket["location"] == "Acme HQ, floor 2"
    assert "replace the modem board" in ticket["repair"]
    assert count(registry, svc_outbox) == 1  # the webhook, once
    clock.t += 2 * hour
    take(registry.engine, [status_message("dev-a", clock.t, 5, {"power-on": 1, "watchdog": 4},
                                          2 * hour)])
    assert one.run_once().tickets_closed == 1
    assert views.tickets(registry.engine, state="closed")[0]["ticket_id"] == \
        ticket["ticket_id"]
    two.run_once()
    assert len(views.tickets(registry.engine)) == 1
    out = Dispatcher(registry.engine, tmp_path, clock=clock)  # nothing listens on port 9
    assert out.run_once().retrying == 1
    assert out.run_once().retrying == 0  # not before its backoff
    clock.t += 3600
    assert out.run_once().given_up == 1
    (row,) = views_outbox(registry)
    assert row["state"] == "given_up" and row["reason"].startswith("given up after 2 tries")


def views_outbox(registry):
    from musket.services.dispatch import outbox

    return outbox(registry.engine)


HEALTH = """\
product: coffee
rules:
  - name: weak
    when: {signal_below: -110, for_days: 3}
    do: [{sink: {path: alerts.jsonl}}]
  - name: sensor
    when: {sensor_fault: "SENSOR_*", for_hours: 1}
    do: [{sink: {path: alerts.jsonl}}]
  - name: silent
    when: {silent_hours: 12}
    do: [{sink: {path: alerts.jsonl}}]
  - name: data
    when: {data_share: 80}
    do: [{sink: {path: alerts.jsonl}}]
"""


def fired(registry, rule):
    with registry.engine.connect() as conn:
        return sorted(conn.execute(select(svc_triggers.c.subject, svc_triggers.c.occurrence)
                                   .where(svc_triggers.c.rule == f"coffee/{rule}")).all())


def test_signal_sensor_silence_and_data_conditions_each_act_once(registry, tmp_path):
    from fleethelp import PLAN, device_iccid
    from sqlalchemy import insert
    from svchelp import readings_message

    from musket.registry.fleet_schema import fleet_plans, fleet_usage

    import_sites(registry.engine, tmp_path, SITES)
    clock = Clock(T0)
    engine = RulesEngine(registry.engine, {"coffee": rules.parse(HEALTH, "h.yaml")}, clock)
    a = Device("dev-a")
    day = 86400
    # dev-a: weak for 3 days, with one good reading on day 1 restarting the spell
    for n, rssi in enumerate([-115, -113, -100, -116, -117, -118, -114, -112]):
        clock.t = T0 + n * day // 2
        take(registry.engine, [readings_message(a, [{"rssi": rssi}], clock.t)])
        engine.run_once()
    assert fired(registry, "weak") == []  # the spell began at day 1.5: 2 days so far
    clock.t = T0 + 4 * day + day // 2 + 60
    take(registry.engine, [readings_message(a, [{"rssi": -119}], clock.t)])
    engine.run_once()
    engine.run_once()
    assert fired(registry, "weak") == [("dev-a", f"l{T0 + 3 * day // 2}")]
    # dev-b: a sensor fault for an hour
    t = clock.t
    take(registry.engine, [status_message("dev-b", t, 1, {"power-on": 1}, 5,
                                          codes=["SENSOR_MISSING:sht"])])
    engine.run_once()
    clock.t = t + 1800
    engine.run_once()
    assert fired(registry, "sensor") == []
    clock.t = t + 3700
    engine.run_once()
    engine.run_once()
    assert fired(registry, "sensor") == [("dev-b", f"s{t}")]
    # both silent for 12 hours: one alert each, then one more after they spoke again
    assert fired(registry, "silent") == []
    clock.t = t + 13 * 3600
    engine.run_once()
    engine.run_once()
    assert [s for s, _ in fired(registry, "silent")] == ["dev-a", "dev-b"]
    # dev-a's SIM at 85 % of its plan this month
    with registry.engine.begin() as conn:
        conn.execute(insert(fleet_plans).values(name=PLAN, monthly_fee=1, pooled=False,
                                                included_bytes=10_000_000,
                                                overage_per_mb=0.5, currency="EUR"))
        conn.execute(insert(fleet_usage).values(iccid=device_iccid("dev-a"),
                                                day=clock().date(), device_tx=8_000_000,
                                                device_rx=500_000))
    engine.run_once()
    engine.run_once()
    assert fired(registry, "data") == [("dev-a", clock().strftime("%Y-%m"))]
    Dispatcher(registry.engine, tmp_path, clock=clock).run_once()
    keys = [json.loads(x)["key"] for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 5


KEYS = (0, 1, 2, 10, 11, 12)


def test_two_dispatchers_deliver_each_row_once_and_a_sink_skips_what_it_holds(
        registry, tmp_path):
    from sqlalchemy import insert

    from musket.registry.core import now

    at = now()
    with registry.engine.begin() as conn:
        for n in KEYS:  # k1 and k10: one key the start of another
            conn.execute(insert(svc_outbox).values(
                key=f"k{n}", kind="sink", target="out.jsonl",
                payload=json.dumps({"key": f"k{n}", "n": n}), state="pending", attempts=0,
                max_attempts=3, next_at=at, created=at))
    # k10 was written before a crash kept its row pending
    (tmp_path / "out.jsonl").write_text(json.dumps({"key": "k10", "n": 10}) + "\n")
    one, two = Dispatcher(registry.engine, tmp_path), Dispatcher(registry.engine, tmp_path)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda d: d.run_once(), [one, two]))
    assert sum(r.delivered for r in results) == 6
    lines = [json.loads(x)["key"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(lines) == sorted(f"k{n}" for n in KEYS)
