"""A simulated day of the whole firmware against a real Mosquitto: a broker restart, three
data-session drops and a 2-hour coverage gap, under both interpreters. Every counter event the
device commits reaches the subscriber exactly once after de-duplication by seq, in order."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import device_files
from device_script import APP, device_script

from musket import broker
from musket_sim.scenario import load_scenario

HOUR = 3600
DAY_SCENARIO = {
    "events": [
        {"at": 3 * HOUR, "drop_data": True},
        {"at": 8 * HOUR, "drop_data": True},
        {"at": 10 * HOUR, "coverage": False},
        {"at": 12 * HOUR, "coverage": True},
        {"at": 15 * HOUR, "drop_data": True},
    ],
}


def _restart_when(sub, mosquitto, leaf_topic, count, done):
    # The broker restarts once the device has delivered `count` event messages.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not done.is_set():
        if len(sub.on(leaf_topic)) >= count:
            mosquitto.restart()
            done.set()
            return
        time.sleep(0.005)


@pytest.mark.slow
def test_a_day_of_outages_delivers_every_counter_event_once_in_order(
        make_device, mosquitto, subscriber):
    sub = subscriber(persistent=True)
    device = make_device(device_modules=[APP], modem=load_scenario(DAY_SCENARIO),
                         files=device_files("dev-a", mosquitto.port))
    restarted = threading.Event()
    watcher = threading.Thread(target=_restart_when,
                               args=(sub, mosquitto, "d/dev-a/e", 5, restarted), daemon=True)
    watcher.start()
    result = device.run(24 * HOUR, script=device_script(event_every_s=1200,
                                                        events_until_s=22 * HOUR))
    restarted.set()
    watcher.join()
    committed = [int(line.split()[1]) for line in result.script_output.splitlines()
                 if line.startswith("EV ")]
    assert len(committed) > 50, result.script_output[-2000:]
    assert committed == list(range(committed[0], committed[0] + len(committed)))

    deadline = time.monotonic() + 10
    stream = broker.DeviceStream()
    while time.monotonic() < deadline:
        stream = broker.DeviceStream()
        for payload in sub.on("d/dev-a/e", "d/dev-a/t"):
            stream.add(broker.decode_telemetry(payload))
        if [e.seq for e in stream.events] == committed:
            break
        time.sleep(0.2)
    log = device.console_log.read_text()
    assert "session ended" in log  # the outages did end sessions, and the device came back
    assert [e.seq for e in stream.events] == committed, (
        [e.seq for e in stream.events], committed, log[-3000:])
    assert stream.gaps == []
    assert {e.kind for e in stream.events} == {"use", "adjust"}
    assert len(stream.readings) > 60  # readings every 15 min, the gap's included
