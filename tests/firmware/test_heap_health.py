"""The heartbeat's status line reports the heap's largest free block next to its free bytes,
under both interpreters: found by the firmware's own probe on MicroPython's heap, and
well-formed (whatever the stand-in gc says) under CPython. It reads the heap at rest: a
message under way puts the line off until it is through, for at most 30 s, and the hours keep
their place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from checksuite import call

from musket_sim.scenario import load_scenario

HOURS = 4
BUSY = Path(__file__).resolve().parent / "checks" / "busy_heartbeat.py"
LATE_MAX_S = 30  # app.main's _BEAT_LATE_MS
STATUS = re.compile(
    r" I status: up (\d+)s, heap free (\d+), largest free (\d+), errors (\d+), modem (\w+)$")


def _status_lines(device) -> list[str]:
    return [line for line in device.console_log.read_text().splitlines()
            if " I status: " in line]


def test_heartbeat_reports_the_largest_free_block(make_device, interpreter):
    device = make_device(modem=load_scenario("good"))
    result = device.run(HOURS * 3600)
    assert result.errors == [] and result.exit_reason == "span_end"
    lines = _status_lines(device)
    assert len(lines) == HOURS - 1  # hourly, the last falls on the span's end
    for line in lines:
        match = STATUS.search(line)
        assert match, f"status line not well-formed: {line!r}"
        free, largest = int(match[2]), int(match[3])
        assert largest % 16 == 0, line
        if interpreter == "micropython":
            assert 0 < largest <= free, line


def _times(device) -> list[float]:
    # The virtual seconds of each status line: "[  3605.000] I status: ...".
    return [float(line.split("]")[0].lstrip("[ ")) for line in _status_lines(device)]


@pytest.mark.parametrize(("busy_asks", "late_s"), [(5, 5), (-1, LATE_MAX_S)],
                         ids=["through-after-5s", "never-through"])
def test_the_heartbeat_waits_for_a_message_under_way(make_device, interpreter, busy_asks,
                                                     late_s):
    # The heartbeat asks once a second whether a message is under way (App.busy, here a
    # stand-in): each line comes that much after its hour, and the next hour is not moved.
    device = make_device(device_modules=[BUSY], modem=load_scenario("good"))
    result = device.run(HOURS * 3600, script=call("busy_heartbeat.start", busy_asks))
    assert result.errors == [] and result.exit_reason == "span_end"
    times = _times(device)
    assert len(times) == HOURS - 1, times
    for hour, t in enumerate(times, start=1):
        assert late_s <= t - hour * 3600 < late_s + 1, (hour, times)
