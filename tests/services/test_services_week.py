"""Acceptance: a simulated week of twenty coffee machines through the real fleet store on a
real PostgreSQL server, with two rules engines running side by side, a restart that loses the
engines' cursors, messages replayed and one held back for days. Every reorder, ticket and
alert happens exactly once per trigger; every order arrives before the beans run out; the
staged device's reboots open one ticket with its diagnosis and parts, closed when it is
healthy; each statement's quantities are exactly the committed brews of the month, and the
statements regenerate byte for byte."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import simweek as week
from sqlalchemy import delete, func, select
from svchelp import T0, import_sites

from musket.fleet.store import FleetStore
from musket.registry import Registry
from musket.registry.fleet_schema import fleet_events
from musket.registry.services_schema import svc_cursors, svc_outbox, svc_triggers
from musket.services import billing, rules, views
from musket.services.dispatch import Dispatcher
from musket.services.engine import RulesEngine

RESTART_H = 3 * 24 + 12  # the service and both engines restart here, cursors lost
REPLAYED_HOURS = 12  # and the last half day's messages come again


class Webhook(BaseHTTPRequestHandler):
    """A receiver that fails its first two requests (503), then takes them."""

    calls: list[tuple[str, int]] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        code = 503 if len(self.calls) < 2 else 200
        self.calls.append((self.headers["Idempotency-Key"], code))
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Webhook.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/tickets"
    server.shutdown()


@pytest.fixture
def pg_registry(postgres, tmp_path):
    with Registry.open(postgres.new_database(), migrate=True) as r:
        week.seed(r, tmp_path)
        yield r


class Clock:
    t = T0

    def __call__(self):
        return datetime.fromtimestamp(self.t, UTC)


def test_a_week_of_twenty_devices_acts_once_per_trigger(pg_registry, tmp_path, webhook):
    engine = pg_registry.engine
    import_sites(engine, tmp_path, week.sites())
    products = {"coffee": rules.parse(week.RULES.replace("WEBHOOK", webhook), "coffee.yaml")}
    clock = Clock()
    engines = [RulesEngine(engine, products, clock) for _ in range(2)]
    engines[0].sync_tariffs()
    dispatcher = Dispatcher(engine, tmp_path, clock=clock)
    store = FleetStore(engine)
    fleet = week.Fleet()
    sent: dict[int, list] = {}
    acted = 0
    installs = {d: [0] for d in week.DEVICES}
    with ThreadPoolExecutor(2) as pool:
        for h in range(week.DAYS * 24):
            sent[h] = fleet.hour(h)
            if h == RESTART_H:
                store = FleetStore(engine)
                engines = [RulesEngine(engine, products, clock) for _ in range(2)]
                with engine.begin() as conn:
                    conn.execute(delete(svc_cursors))
                replay = [m for k in range(h - REPLAYED_HOURS, h) for m in sent[k]]
                telemetry = [m for m in replay if m.topic.endswith("/e")]
                assert store.take(replay).duplicates == len(telemetry) > 0
            store.take(sent[h])
            clock.t = T0 + h * week.HOUR + week.HOUR - 1
            acted += sum(r.triggers for r in pool.map(lambda e: e.run_once(), engines))
            dispatcher.run_once()
            for order in views.orders(engine, state="placed"):
                arrives = _time(order["placed"]) + timedelta(days=1)
                if arrives <= clock():  # the technician installs it as it arrives
                    views.set_order_state(engine, order["order_id"], "installed", "tech")
                    installs[order["device_id"]].append(
                        sum(1 for at, _ in fleet.brews[order["device_id"]] if at <= clock.t))

    with engine.connect() as conn:
        triggers = conn.execute(select(svc_triggers.c.rule, svc_triggers.c.subject,
                                       svc_triggers.c.occurrence)).all()
        outbox_states = dict(conn.execute(select(svc_outbox.c.state, func.count())
                                          .group_by(svc_outbox.c.state)).all())
        committed = conn.execute(select(func.count()).select_from(fleet_events)).scalar_one()
    assert acted == len(triggers)  # each trigger acted once, in one engine or the other
    print(f"triggers {len(triggers)}, outbox {outbox_states}, events {committed}")
    assert set(outbox_states) == {"done"}  # every action delivered, none given up

    # descaling: every hundredth brew of every device, once
    expected = {(d, f"{k * 100}") for d, dev in fleet.devices.items()
                for k in range(1, dev.totals["brews"] // 100 + 1)}
    assert {(s, o) for r, s, o in triggers if r == "coffee/descale"} == expected
    sunk = [json.loads(x) for x in (tmp_path / "descale.jsonl").read_text().splitlines()]
    assert sorted((x["device_id"], str(x["crossed"])) for x in sunk) == sorted(expected)

    # reorders: one per installation, each arriving before the beans ran out
    orders = views.orders(engine)
    assert len({(o["device_id"], o["order_id"]) for o in orders}) == len(orders)
    assert len(orders) == sum(1 for r, _, _ in triggers if r == "coffee/beans-low")
    assert {o["device_id"] for o in orders} >= {"wk-14", "wk-10", "wk-06"}  # the busy ones
    assert "wk-00" not in {o["device_id"] for o in orders}  # 5 a day: a week's beans last
    runouts = fleet.runouts(installs, 100)
    for g_order in _by_generation(orders):
        device_id, g, order = g_order
        ran_out = runouts.get((device_id, g))
        arrived = _time(order["placed"]) + timedelta(days=1)
        assert ran_out is None or arrived.timestamp() <= ran_out, (device_id, g, order)
    csv_lines = (tmp_path / "orders.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(orders)

    # the staged device: one ticket with its diagnosis and parts, closed when healthy
    (ticket,) = views.tickets(engine)
    assert ticket["device_id"] == week.STAGED and ticket["codes"] == ["MODEM_HUNG"]
    assert "modem board" in ticket["parts"] and ticket["location"] == "deli site 7"
    assert ticket["connections"] and ticket["closed"] is not None
    assert _time(ticket["closed"]) < datetime.fromtimestamp(
        T0 + (week.HEALTHY_AGAIN_H + 2) * week.HOUR, UTC)
    keys = {k for k, _ in Webhook.calls}
    assert len(keys) == 1 and [c for _, c in Webhook.calls] == [503, 503, 200]

    # the silent device: one alert
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [a["device_id"] for a in alerts] == [week.SILENT]

    # billing: exactly the committed brews of December, whatever came late or twice
    statements = views.statements(engine, "2026-12")
    by_customer: dict[str, int] = {}
    for n, d in enumerate(week.DEVICES):
        c = week.CUSTOMERS[n % 4]
        by_customer[c] = by_customer.get(c, 0) + fleet.devices[d].totals["brews"]
    assert {s["customer_id"]: s["lines"][0]["quantity"] for s in statements} == by_customer
    assert sum(by_customer.values()) == committed
    for s in statements:  # cafe-c's contract: 0.04 a brew, no minimum
        price, minimum = (0.04, 0.0) if s["customer_id"] == "cafe-c" else (0.05, 10.0)
        assert s["lines"][0]["unit_price"] == price and s["minimum"] == minimum
        assert s["total"] == max(minimum, round(s["lines"][0]["quantity"] * price, 2))
    store.take([m for k in range(0, 24) for m in sent[k]])  # a day replayed after the week
    assert billing.to_csv(views.statements(engine, "2026-12")) == billing.to_csv(statements)
    assert billing.to_json(views.statements(engine, "2026-12")) == billing.to_json(statements)


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _by_generation(orders):
    seen: dict[str, int] = {}
    for o in orders:
        g = seen.get(o["device_id"], 0)
        seen[o["device_id"]] = g + 1
        yield o["device_id"], g, o
