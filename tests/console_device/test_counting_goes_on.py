"""Counted uses go on while the console is attached, during selftests and after the console is
detached, under both interpreters: the counters the console reads are checked against the
uses the appliance model made (musket_sim.usage_scenario.expected_counts) up to the device's
clock at that moment."""

from __future__ import annotations

import time

import pytest
from consoledev import ConsoleDevice

from musket_sim import VirtualDevice
from musket_sim.scenario import load_scenario
from musket_sim.usage_scenario import expected_counts, load_usage

BOARD = "esp32-sim7080g"
SPEED = 40  # virtual seconds per wall second; the spans below are virtual
# A busy appliance, open round the clock: a brew and a dispense every couple of minutes.
USAGE = {"brews_per_day": 720, "dispenses_per_day": 720, "open_h": [0, 24], "min_gap_s": 30}
BREW_MIN_S = 10  # the config's defaults (app/config.py)
MIN_PULSES = 20
SETTLE_S = 120  # a use is counted this long after it ends, at most (detection, the commit)
BUSY_S = 800  # console traffic, selftests included: about six brews and six dispenses
BUSY_WALL_LIMIT_S = 120  # for a device that cannot keep its pace on a loaded machine
DETACHED_S = 400


def _check(con: ConsoleDevice, device: VirtualDevice) -> tuple[int, int]:
    # The counters and the device's clock, read together; the counts must lie between what
    # the model made up to SETTLE_S before that clock and what it made up to it.
    values = con.ask("counters")["result"]["values"]
    now = con.ask("status")["result"]["uptime_s"]
    usage = device.usage_settings()
    low = expected_counts(usage, device.seed, 0, max(0, now - SETTLE_S), brew_min_s=BREW_MIN_S,
                          min_pulses=MIN_PULSES)
    high = expected_counts(usage, device.seed, 0, now, brew_min_s=BREW_MIN_S,
                           min_pulses=MIN_PULSES)
    brews = values.get("brews", 0)
    ml = round(values.get("litres", 0) * 1000)
    assert low[0] <= brews <= high[0] + high[2], (brews, low, high, now)
    assert low[1] <= ml <= high[1], (ml, low, high, now)
    return brews, now


@pytest.fixture
def busy_device(tmp_path, interpreter):
    device = VirtualDevice(BOARD, tmp_path / "dev", interpreter=interpreter,
                           modem=load_scenario("good"), usage=load_usage(USAGE))
    device.create_flash()
    con = ConsoleDevice(device, 24 * 3600, SPEED).start()
    yield con, device
    result = con.stop()
    device.close()
    assert result.errors == [], result.errors


@pytest.mark.slow
def test_counting_goes_on_during_console_commands_and_selftests(busy_device):
    con, device = busy_device
    first, t0 = _check(con, device)
    deadline = time.monotonic() + BUSY_WALL_LIMIT_S
    selftests = 0
    # Until the device's own clock has gone BUSY_S on, however fast the host let it run.
    while time.monotonic() < deadline:
        assert con.ask("selftest")["ok"] is True
        selftests += 1
        status = con.ask("status").get("result")  # None: refused for memory, asked again
        if status is not None and status["uptime_s"] >= t0 + BUSY_S:
            break
        con.ask("sensors")
    during, t1 = _check(con, device)
    assert selftests >= 3
    assert during > first, "brews were counted while the console worked"

    # Detached: nobody on the console.
    con.close_port()
    time.sleep(DETACHED_S / SPEED)
    con.open()
    after, t2 = _check(con, device)
    assert after > during and t2 > t1 > t0
