"""The keepalive against a real Mosquitto: a ping only when there is nothing to send. When the
keepalive runs out while readings wait for their batch, the readings go instead of a PINGREQ
(the same air bytes carry data); with nothing waiting, the device pings."""

from __future__ import annotations

import re

from conftest import device_files

from musket_sim.scenario import load_scenario

HOUR = 3600
# Readings every 10 min, 8 to a batch (80 min), keepalive 2 min: the keepalive runs out after
# every reading before its batch is full, and between readings with nothing waiting.
PROFILE = {"report_interval_s": 600, "batch_size": 8, "keepalive_s": 120}


def test_waiting_readings_go_instead_of_a_ping_and_an_idle_session_pings(
        make_device, mosquitto):
    device = make_device(modem=load_scenario("good"),
                         files=device_files("dev-a", mosquitto.port, **PROFILE))
    result = device.run(2 * HOUR)
    assert not result.errors, result.errors
    log = mosquitto.log()
    readings = re.findall(r"Received PUBLISH from dev-a \([^)]*'d/dev-a/t'", log)
    pings = log.count("Received PINGREQ from dev-a")
    # 12 readings in 2 h: with a batch of 8 none would have gone by its batch alone after the
    # first 80 min; each goes within a keepalive of being taken instead.
    assert len(readings) >= 10, log[-3000:]
    # Between a reading's message and the next reading (10 min), the session idles: it pings.
    assert pings >= 2 * len(readings), (pings, len(readings))
    # One session throughout: every ping was answered, no message waited out its PUBACK.
    console = device.console_log.read_text()
    assert console.count("I uplink: connected") == 1 and "session ended" not in console, \
        console[-3000:]
