"""The heartbeat's status line reports the heap's largest free block next to its free bytes,
under both interpreters: found by the firmware's own probe on MicroPython's heap, and
well-formed (whatever the stand-in gc says) under CPython."""

from __future__ import annotations

import re

from musket_sim.scenario import load_scenario

HOURS = 4
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
