"""End to end on real parts: devices' encoded messages published to a real Mosquitto, taken by
`musket fleet serve` into a real PostgreSQL, and two `musket services run --once` processes
started together on that database, again after the messages are replayed: each threshold and
the reboot storm's ticket act once; the ticket closes when the device reports healthy."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from fleethelp import MUSKET, DevicePublisher, ServeProcess, status, telemetry, wait_until
from sqlalchemy import func, select
from svchelp import import_sites

from musket.registry.fleet_schema import fleet_devices, fleet_events, fleet_messages
from musket.services import views

RULES = """\
product: coffee
rules:
  - name: descale
    when: {counter: brews, every: 10}
    do: [{sink: {path: descale.jsonl}}]
  - name: unstable
    when: {reboots: 3, within_hours: 24}
    do: [{ticket: {healthy_after_hours: 0.0005}}]
"""
HEALTHY_AFTER_S = 0.0005 * 3600


@pytest.fixture
def location(postgres):
    return postgres.new_database()


def services_run(location, rules_file, sinks, copies=2) -> list[dict]:
    """`copies` engines started together, one pass each; their figures."""
    procs = [subprocess.Popen([str(MUSKET), "services", "run", "--registry", location,
                               "--rules", str(rules_file), "--sinks", str(sinks), "--once",
                               "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(copies)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr.decode()
        out.append(json.loads(stdout))
    return out


def count(registry, table, **where) -> int:
    with registry.engine.connect() as conn:
        q = select(func.count()).select_from(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        return conn.execute(q).scalar_one()


def test_two_engines_on_one_database_act_once_on_what_the_fleet_service_took(
        registry, location, mosquitto, tmp_path):
    rules_file = tmp_path / "coffee.yaml"
    rules_file.write_text(RULES)
    import_sites(registry.engine, tmp_path, [("dev-a", "acme", "coffee", "HQ")])
    serve = ServeProcess(location, mosquitto.port, "fleet-1", tmp_path)
    device = DevicePublisher(mosquitto.port, "dev-a")
    try:
        messages = [telemetry(m, events=[(s, "brews", s) for s in range(8 * m - 7, 8 * m + 1)],
                              t0=int(time.time()) - 60) for m in (1, 2, 3)]
        for payload in messages:
            device.publish("d/dev-a/e", payload)
        device.publish("d/dev-a/s", status(t=1, bc=1, rr={"power-on": 1}, dx=[]), retain=True)
        wait_until(lambda: count(registry, fleet_events) == 24, what="24 brews stored")
        wait_until(lambda: count(registry, fleet_devices, boot_count=1), what="status stored")
        first = services_run(location, rules_file, tmp_path)
        assert sum(f["triggers"] for f in first) == 2  # 10 and 20, once between the two
        for n in (1, 2, 3):  # three watchdog resets with the modem hung
            device.publish("d/dev-a/s", status(t=1 + n, bc=1 + n, up=5, dx=["MODEM_HUNG"],
                                               rr={"power-on": 1, "watchdog": n}),
                           retain=True)
        wait_until(lambda: count(registry, fleet_devices, boot_count=4), what="reboots stored")
        for payload in messages:  # replayed
            device.publish("d/dev-a/e", payload)
        device.publish("d/dev-a/e", telemetry(4, events=[(25, "brews", 25)],
                                              t0=int(time.time())))
        wait_until(lambda: count(registry, fleet_messages) == 4, what="the new message")
        assert count(registry, fleet_events) == 25
        second = services_run(location, rules_file, tmp_path)
        assert sum(f["triggers"] for f in second) == 1  # the ticket; 20 was done before
        assert sum(f["tickets_opened"] for f in second) == 1
        (ticket,) = views.tickets(registry.engine)
        assert ticket["codes"] == ["MODEM_HUNG"] and "modem board" in ticket["parts"]
        device.publish("d/dev-a/s", status(t=9, bc=4, up=60, dx=[],
                                           rr={"power-on": 1, "watchdog": 3}), retain=True)
        wait_until(lambda: count(registry, fleet_devices, uptime_s=60), what="healthy status")
        time.sleep(HEALTHY_AFTER_S)  # the rule's quiet time since the last reboot
        third = services_run(location, rules_file, tmp_path)
        assert sum(f["tickets_closed"] for f in third) == 1
        assert sum(f["triggers"] for f in third) == 0
    finally:
        device.close()
        serve.stop()
    lines = [json.loads(x) for x in (tmp_path / "descale.jsonl").read_text().splitlines()]
    assert sorted(x["crossed"] for x in lines) == [10, 20]
    assert views.tickets(registry.engine, state="closed")[0]["ticket_id"] == ticket["ticket_id"]
