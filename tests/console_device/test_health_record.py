"""The device's health record across resets, under both interpreters: an exception that takes
the whole application down is written to flash before the reset it causes, the next boot's
reset cause is "crash", and the console's status shows the crash after the reboot."""

from __future__ import annotations

import json

from consoledev import ConsoleDevice

from musket_sim.scenario import load_scenario
from musket_sim.usage_scenario import load_usage

HEADER = 14  # a store record's header: magic, version, reserved, length, crc (app/store.py)
CRASH = """
import app.main as m

def broken(self, config, board):
    raise ValueError("sensor table corrupt")

m.App.start_modem = broken
m.start()
"""


def _record(device, name: str) -> dict:
    data = device.read_files()[name]
    assert data[:4] == b"MSKR", data[:16]
    return json.loads(data[HEADER:])


def test_a_crash_is_kept_across_its_reset_and_shown_after_it(make_device):
    device = make_device(modem=load_scenario("good"), usage=load_usage("day"))
    result = device.run(120, script=CRASH)
    reasons = [boot.reason for boot in result.boot_log]
    assert len(reasons) >= 2 and reasons[0] != "span_end", result.boot_log
    log = device.console_log.read_text()
    assert "crashed, resetting: ValueError" in log, log[-2000:]
    assert "boot #2, reset cause crash" in log, log[-2000:]
    record = _record(device, "health.json")
    assert record["rr"] == {"power-on": 1, "crash": 1}, record
    assert record["cr"]["e"] == "ValueError: sensor table corrupt"
    assert "broken" in record["cr"]["tb"] and len(record["cr"]["tb"]) <= 400
    assert "cp" not in record  # the crash was counted once, by the boot after it

    con = ConsoleDevice(device, 3600, 5).start()
    try:
        health = con.ask("status")["result"]["health"]
    finally:
        con.stop()
    assert health["last_crash"]["e"] == "ValueError: sensor table corrupt"
    assert health["reboots"] == {"power-on": 2, "crash": 1}
    assert health["reset_cause"] == "power-on"
