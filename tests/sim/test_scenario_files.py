"""Scenario files for the modem model (musket_sim.scenario), read on the host: the ready
scenarios, JSON and TOML files, and a clear error naming the field for each bad value."""

from __future__ import annotations

import json

import pytest

from musket_sim.scenario import SCENARIOS, ScenarioError, load_scenario


def test_ready_scenarios_load_with_defaults():
    for name, data in SCENARIOS.items():
        loaded = load_scenario(name)
        assert loaded["reply_ms"] == 5, name
        assert loaded["sim_present"] is (name != "no-sim"), name
        assert len(loaded["events"]) == len(data.get("events", [])), name


def test_scenario_files_json_and_toml(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"apn": "iot", "events": [
        {"at": 90, "coverage": True}, {"at": 10, "coverage": False}]}))
    loaded = load_scenario(tmp_path / "s.json")
    assert loaded["apn"] == "iot"
    assert [e["at"] for e in loaded["events"]] == [10, 90]
    (tmp_path / "s.toml").write_text('rssi = 12\n[[events]]\nat = 5\ndeny = "yes"\n')
    with pytest.raises(ScenarioError, match=r"^s\.toml: events\[0\]\.deny: expected true or false"):
        load_scenario(tmp_path / "s.toml")
    (tmp_path / "s.yaml").write_text("rssi: 3")
    with pytest.raises(ScenarioError, match=r"s\.yaml: expected a \.json or \.toml file"):
        load_scenario(tmp_path / "s.yaml")
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(tmp_path / "missing.json")


@pytest.mark.parametrize(("data", "message"), [
    ({"family": "sim9999"}, r"family: unknown value 'sim9999'"),
    ({"iccid": "1234567890123456789"}, r"iccid: .* does not start with 89"),
    ({"iccid": "89490"}, r"iccid: '89490' has 5 digits"),
    ({"imei": "869715053990671"}, r"imei: .* fails the Luhn check"),
    ({"imsi": "26201abc"}, r"imsi: expected a string of digits"),
    ({"rssi": 32}, r"rssi: 32 is out of range"),
    ({"rsrp": "-95"}, r"rsrp: expected an integer"),
    ({"register_s": -1}, r"register_s: -1 is out of range"),
    ({"apn": 'a"b'}, r"apn: .* only printable ASCII"),
    ({"rat": "5g"}, r"rat: unknown value '5g'"),
    ({"hosts": {"broker": "8.8.8.8"}}, r"hosts: broker: '8\.8\.8\.8' is not a loopback"),
    ({"colour": "red"}, r"colour: unknown field"),
    ({"events": {"at": 1}}, r"events: expected a list"),
    ({"events": [{"coverage": False}]}, r"events\[0\]\.at: missing"),
    ({"events": [{"at": 1, "flood": True}]}, r"events\[0\]\.flood: unknown event"),
    ({"events": [{"at": 1, "hang": False}]}, r"events\[0\]\.hang: expected true"),
    ({"events": [{"at": 1, "garbage": "hex:zz"}]}, r"events\[0\]\.garbage: bad hex"),
    ({"events": [{"at": 1, "garbage_bytes": 0}]}, r"events\[0\]\.garbage_bytes: 0 is out of"),
    ({"events": [{"at": 1, "sim_swap": "123"}]}, r"events\[0\]\.sim_swap: '123' has 3 digits"),
    ({"iccid": "89860070090a6019125"}, r"iccid: expected a string of digits \(hex digits A-F"),
    ({"events": [{"at": 1, "reject_cause": 256}]}, r"events\[0\]\.reject_cause: 256 is out"),
    ({"events": [{"at": 1, "modem_reset": False}]}, r"events\[0\]\.modem_reset: expected true"),
    ({"push": "yes"}, r"push: expected true or false"),
])
def test_scenario_errors_name_the_field(data, message):
    with pytest.raises(ScenarioError, match="^scenario: " + message):
        load_scenario(data)
