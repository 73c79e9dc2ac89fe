"""A bulk pause reaches the devices: `musket fleet sims pause --carrier-states` changes ten SIMs
in the registry (ten audit rows) and tells the simulated carrier, whose modem model then stops
those SIMs' data. The whole firmware (under both interpreters) reports the stop, counts it, and
once `sims resume` lets its data flow again, the fleet service (a real `musket fleet serve`
against a real Mosquitto) records it: the device's count of carrier stops, and its connection
history naming the session the carrier ended."""

from __future__ import annotations

import json

import pytest
from checksuite import call
from click.testing import CliRunner
from fleethelp import (
    ACTOR,
    ServeProcess,
    bind,
    broker_module,
    device_iccid,
    spare_iccids,
    wait_until,
)
from test_data_use import CHECKS, EVENTS_APP, HOUR

from musket.cli import main
from musket.fleet import views
from musket_sim.scenario import load_scenario

DEVICES = ("dev-a", "dev-b")


def _data_lines(output: str) -> list[list[int]]:
    return [[int(x) for x in line.split()[1:4]] for line in output.splitlines()
            if line.startswith("DATA ")]


def _bulk(location, action, sims_file, carrier_states):
    result = CliRunner().invoke(main, [
        "fleet", "sims", action, "--file", str(sims_file), "--reason", "customer asked",
        "--carrier-states", str(carrier_states), "--registry", location, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("location", ["sqlite"], indirect=True)
def test_a_bulk_pause_stops_the_devices_data_and_the_fleet_sees_why(
        make_device, registry, location, mosquitto, tmp_path):
    ten = [device_iccid(d) for d in DEVICES] + spare_iccids()[:8]
    for n, sim in enumerate(ten[2:]):  # eight more units in the field
        bind(registry, f"dev-x{n}", sim, 20 + n)
    for sim in ten:
        registry.set_sim_state(sim, "active", "in service", ACTOR)
    sims_file = tmp_path / "sims.txt"
    sims_file.write_text("\n".join(ten) + "\n")
    carrier_states = tmp_path / "carrier-states.json"
    serve = ServeProcess(location, mosquitto.port, "fleet-1", tmp_path)
    units = {}
    try:
        for device_id in DEVICES:
            scenario = load_scenario({"iccid": device_iccid(device_id),
                                      "carrier_states": str(carrier_states)})
            units[device_id] = make_device(
                name=device_id, device_modules=[EVENTS_APP, CHECKS / "app_with_data.py"],
                modem=scenario, files=broker_module().device_files(device_id, mosquitto.port))
        script = call("app_with_data.start", 600)
        for unit in units.values():  # in service: data flows
            assert _data_lines(unit.run(2 * HOUR, script=script).script_output)[-1][2] == 0

        audit_before = len(registry.audit())
        paused = _bulk(location, "pause", sims_file, carrier_states)
        assert paused["changed"] == ten and not paused["refused"]
        assert len(registry.audit()) == audit_before + 10
        for device_id, unit in units.items():
            lines = _data_lines(unit.run(3 * HOUR, script=script).script_output)
            assert lines and lines[-1][2] == 1, (device_id, lines[-3:])  # "dp": paused
            log = unit.console_log.read_text()
            assert "the carrier stopped this SIM's data" in log, log[-2000:]

        resumed = _bulk(location, "resume", sims_file, carrier_states)
        assert resumed["changed"] == ten
        for unit in units.values():
            lines = _data_lines(unit.run(2 * HOUR, script=script).script_output)
            assert lines[-1][2] == 0, lines[-3:]

        def seen(device_id):
            detail = views.device_detail(registry.engine, device_id)
            return detail["data"]["carrier_stops"] == 1 and any(
                s["why"] == "data-stop" for s in detail["sessions"])
        for device_id in DEVICES:
            wait_until(lambda d=device_id: seen(d), 30, what=f"{device_id}'s stop recorded")
    finally:
        assert serve.stop() == 0
    for device_id in DEVICES:
        detail = views.device_detail(registry.engine, device_id)
        assert detail["sim_state"] == "active"
        whys = [s["why"] for s in detail["sessions"]]
        assert whys.count("data-stop") == 1, detail["sessions"]
    states = json.loads(carrier_states.read_text())
    assert states == dict.fromkeys(ten, "active")
