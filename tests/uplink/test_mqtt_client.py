"""The MQTT client's exact bytes and its answers to a broker that refuses, sends garbage or
cuts a packet short, over a fake stream (checks/mqtt_checks.py on a virtual device), one item
per check under each interpreter."""

from __future__ import annotations

from pathlib import Path

from checksuite import Suite, on_device

CHECKS = Path(__file__).parent / "checks" / "mqtt_checks.py"
SUITE = Suite(CHECKS, on_device(CHECKS, 60))

test_mqtt_client, test_mqtt_client_run_is_clean = SUITE.tests()
