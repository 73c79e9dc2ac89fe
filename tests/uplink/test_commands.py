"""Downlink commands through the real Mosquitto to the whole firmware, under both
interpreters: validated, refused with a reason, run at most once per id, answered."""

from __future__ import annotations

import json
import time

from conftest import device_files
from device_script import APP, device_script

from musket_sim.scenario import load_scenario

COMMANDS = [
    b'{"id": "c1", "op": "config", "set": {"report_interval_s": 600}}',
    b'{"id": "c1", "op": "config", "set": {"report_interval_s": 700}}',  # repeated id
    b'{"id": "c2", "op": "config", "set": {"report_interval_s": 5}}',  # out of range
    b'{"id": "c3", "op": "counter", "name": "brews", "value": 5, "reason": "field fix"}',
    b'{"id": "c4", "op": "counter", "name": "brews", "value": -1, "reason": "x"}',
    b'not json {',
    b'{"id": "c5", "op": "config", "set": {"mqtt_host": "elsewhere.example"}}',
    b'{"id": "c6", "op": "ota"}',
    b'{"id": "c7", "op": "status"}',
    b'{"id": "c8", "op": "config", "set": {"log_level": "' + b"x" * 600 + b'"}}',  # too large
    b'{"id": "c9", "op": "launch"}',
    # brew_ma: the usage detector takes it at once; service_rules are read at boot.
    b'{"id": "c10", "op": "config", "set": {"brew_ma": 1200, "service_rules": "brews/50:x"}}',
]


def test_commands_are_checked_answered_and_run_once(make_device, mosquitto, subscriber):
    sub = subscriber()
    device = make_device(device_modules=[APP], modem=load_scenario("good"),
                         files=device_files("dev-a", mosquitto.port))
    first = device.run(600, script=device_script())  # makes the session and its subscription
    assert sub.on("d/dev-a/s"), first.script_output[-2000:]
    for payload in COMMANDS:  # queued by the broker for the device's persistent session
        sub.publish("d/dev-a/c", payload)
    second = device.run(600, script=device_script())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(sub.on("d/dev-a/r")) < len(COMMANDS):
        time.sleep(0.05)
    replies = [json.loads(p) for p in sub.on("d/dev-a/r")]
    assert len(replies) == len(COMMANDS), (replies, second.script_output[-3000:])
    by_id = {}
    for reply in replies:
        by_id.setdefault(reply["id"], []).append(reply)
    applied = {"applied": {"report_interval_s": 600}}
    assert by_id["c1"][0] == {"id": "c1", "ok": True, "result": applied}
    # Not run again: the stored reply goes again, marked as a repeat.
    assert by_id["c1"][1] == {"id": "c1", "ok": True, "result": applied, "dup": True}
    assert "report_interval_s: value 5 is below the minimum 60" in by_id["c2"][0]["error"]
    assert by_id["c3"][0]["ok"] is True and by_id["c3"][0]["result"]["seq"] > 0
    assert "value must be an integer" in by_id["c4"][0]["error"]
    assert "not settable remotely" in by_id["c5"][0]["error"]
    assert by_id["c6"][0] == {"id": "c6", "ok": False, "error": "offer: expected an object"}
    assert by_id["c7"][0]["result"]["counters"]["brews"] == 5
    assert "unknown op" in by_id["c9"][0]["error"]
    assert by_id["c10"][0] == {"id": "c10", "ok": True,
                               "result": {"applied": {"brew_ma": 1200},
                                          "after_reboot": {"service_rules": "brews/50:x"}}}
    anonymous = sorted(r["error"].split(":")[0] for r in by_id[None])
    assert anonymous == ["malformed", "too large"], by_id[None]
    # The config change is on flash, once: the repeated id did not set 700.
    files = device.read_files()
    config = files["config.json"]
    assert b'"report_interval_s": 600' in config and b'"brew_ma": 1200' in config
    assert b"elsewhere" not in config
    # Every reply the broker acknowledged is marked so on flash: none is sent again.
    record = json.loads(files["uplink.cmd"][14:])
    assert [e[0] for e in record if e[3]] == [], record
