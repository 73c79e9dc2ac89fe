"""End to end: the real firmware's day (under both interpreters) against a real Mosquitto,
taken by `musket fleet serve` into SQLite or PostgreSQL, with a broker restart and a restart of
the fleet service on the way. Every counter event the device committed is stored once, no
telemetry is missing, and `musket fleet status` shows the device's own counters."""

from __future__ import annotations

import json
import threading
import time

import pytest
from checksuite import call
from click.testing import CliRunner
from fleethelp import ServeProcess, broker_module, wait_until
from sqlalchemy import func, select
from test_data_use import CHECKS, EVENTS_APP, HOUR

from musket.cli import main
from musket.registry.fleet_schema import fleet_events, fleet_messages
from musket_sim.scenario import load_scenario

SCENARIO = {"events": [{"at": 5 * HOUR, "drop_data": True},
                       {"at": 9 * HOUR, "coverage": False},
                       {"at": 11 * HOUR, "coverage": True}]}


def _count(registry, table):
    with registry.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)
                            .where(table.c.device_id == "dev-a")).scalar_one()


@pytest.mark.slow
def test_a_virtual_day_through_the_fleet_service_matches_the_device(
        make_device, registry, location, mosquitto, tmp_path):
    serve = [ServeProcess(location, mosquitto.port, "fleet-1", tmp_path)]
    done = threading.Event()

    def disturb():
        # Once messages flow: restart the fleet service (SIGTERM, then a new process on the
        # same persistent session), later the broker.
        try:
            wait_until(lambda: _count(registry, fleet_messages) >= 10 or done.is_set(), 120)
            if not done.is_set():
                assert serve[0].stop() == 0
                serve[0] = ServeProcess(location, mosquitto.port, "fleet-1", tmp_path)
            wait_until(lambda: _count(registry, fleet_messages) >= 30 or done.is_set(), 120)
            if not done.is_set():
                mosquitto.restart()
        except AssertionError:
            pass

    disturber = threading.Thread(target=disturb, daemon=True)
    disturber.start()
    device = make_device(device_modules=[EVENTS_APP, CHECKS / "app_with_data.py"],
                         modem=load_scenario(SCENARIO),
                         files=broker_module().device_files("dev-a", mosquitto.port))
    try:
        result = device.run(24 * HOUR, script=call("app_with_data.start", 1800, 1200,
                                                   22 * HOUR))
        done.set()
        disturber.join()
        committed = [int(line.split()[1]) for line in result.script_output.splitlines()
                     if line.startswith("EV ")]
        counters = [line.split() for line in result.script_output.splitlines()
                    if line.startswith("COUNTERS ")]
        assert len(committed) > 50 and counters, result.script_output[-2000:]
        values, pending = json.loads(counters[-1][1]), int(counters[-1][2])
        assert pending == 0, counters[-1]
        try:
            wait_until(lambda: _count(registry, fleet_events) >= len(committed), 60,
                       what="every event stored")
        except AssertionError:
            with registry.engine.connect() as conn:
                have = {s for (s,) in conn.execute(select(fleet_events.c.seq))}
            print("MISSING", sorted(set(committed) - have), serve[0].log()[-3000:],
                  mosquitto.log()[-6000:])
            raise
    finally:
        done.set()
        code = serve[0].stop()
    assert code == 0, serve[0].log()
    restarts = serve[0].log().count("lost or unreachable")
    status = CliRunner().invoke(main, ["fleet", "status", "--json", "--registry", location])
    assert status.exit_code == 0, status.output
    row = next(r for r in json.loads(status.stdout) if r["device_id"] == "dev-a")
    assert row["counters"] == values, (row, values)
    assert row["gaps"] == 0
    with registry.engine.connect() as conn:
        seqs = [s for (s,) in conn.execute(select(fleet_events.c.seq)
                                           .where(fleet_events.c.device_id == "dev-a")
                                           .order_by(fleet_events.c.seq))]
    assert seqs == committed
    print(f"\n{len(committed)} events, {_count(registry, fleet_messages)} messages, "
          f"broker losses seen by the service: {restarts}, at {time.strftime('%X')}")
