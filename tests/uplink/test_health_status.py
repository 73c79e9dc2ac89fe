"""The device's status message (contract A, docs/uplink.md) from the whole firmware to a real
Mosquitto, under both interpreters: a map of short keys in CBOR (JSON when telemetry_json=1),
retained on d/<id>/s, sent with each session's CONNECT and again with the first telemetry after
health_interval_s; the will stays "0"."""

from __future__ import annotations

import json

import cbor2
from conftest import device_files
from device_script import APP, device_script

from musket_sim.scenario import load_scenario
from musket_sim.usage_scenario import load_usage

HOUR = 3600
KEYS = {"on", "v", "t", "fw", "bc", "rc", "rr", "up", "cn", "dx"}
SIZE_AIM = 160  # bytes of CBOR: contract A's aim


def _statuses(sub) -> list[bytes]:
    return [p for p in sub.on("d/dev-a/s") if p != b"0"]


def test_the_status_message_is_a_cbor_map_of_contract_a(make_device, mosquitto, subscriber):
    sub = subscriber()
    device = make_device(device_modules=[APP], modem=load_scenario("good"),
                         usage=load_usage("day"),
                         files=device_files("dev-a", mosquitto.port, health_interval_s=600))
    # Events every 5 min: telemetry goes out past the 10 min health interval, so the status
    # rides again with it; the heap's low-water marks come from the hourly heartbeat.
    result = device.run(2 * HOUR, script=device_script(event_every_s=300,
                                                       events_until_s=2 * HOUR))
    statuses = _statuses(sub)
    assert len(statuses) >= 2, (statuses, device.console_log.read_text()[-3000:])
    first = cbor2.loads(statuses[0])
    assert KEYS <= first.keys(), first
    assert first["on"] == 1 and first["v"] == 1
    assert first["fw"] == "0.0.0" and first["bc"] == 1 and first["rc"] == "power-on"
    assert first["rr"] == {"power-on": 1}
    assert first["dx"] == []
    assert set(first["cn"]) == {"s", "f", "rj"} and first["cn"]["f"] == 0
    assert "cr" not in first
    assert len(statuses[0]) < SIZE_AIM, len(statuses[0])
    later = cbor2.loads(statuses[-1])
    assert later["up"] > first["up"] and later["cn"]["s"] > 0, later
    assert "hp" in later and 0 < later["hp"]["lb"] <= later["hp"]["f"], later
    assert result.errors == [], result.errors


def test_the_status_message_is_json_when_telemetry_is(make_device, mosquitto, subscriber):
    sub = subscriber()
    device = make_device(device_modules=[APP], modem=load_scenario("good"),
                         files=device_files("dev-a", mosquitto.port, telemetry_json=1))
    device.run(600, script=device_script())
    statuses = _statuses(sub)
    assert statuses, device.console_log.read_text()[-3000:]
    first = json.loads(statuses[0])
    assert KEYS <= first.keys() and first["on"] == 1, first


def test_a_denied_registration_goes_up_as_its_cause_once_the_link_is_back(
        make_device, mosquitto, subscriber):
    sub = subscriber()
    scenario = load_scenario({"events": [{"at": 0, "deny": True, "reject_cause": 15},
                                         {"at": 120, "deny": False}]})
    device = make_device(device_modules=[APP], modem=scenario,
                         files=device_files("dev-a", mosquitto.port))
    device.run(1800, script=device_script())
    statuses = _statuses(sub)
    assert statuses, device.console_log.read_text()[-3000:]
    first = cbor2.loads(statuses[0])
    assert first["cn"]["rj"].get("15", 0) >= 1, first
    assert first["cn"]["f"] >= 1, first
