"""The MQTT client's exact bytes and its answers to a broker that refuses, sends garbage or
cuts a packet short, over a fake stream, under both interpreters."""

from __future__ import annotations

from pathlib import Path

CHECKS = Path(__file__).parent / "checks" / "mqtt_checks.py"


def test_mqtt_client_checks(make_device):
    device = make_device()
    result = device.run(60, script=CHECKS.read_text())
    lines = result.script_output.splitlines()
    assert [ln for ln in lines if ln.startswith("FAIL")] == [], result.script_output
    assert len([ln for ln in lines if ln.startswith("PASS")]) == 5, (
        result.script_output + "\n".join(result.errors))
