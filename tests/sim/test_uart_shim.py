"""The machine.UART stand-in keeps the driver's receive buffer as a fixed ring, as the chip's
IDF driver does outside the Python heap: bytes beyond it are lost and counted, reads come out in
order across the ring's end, and `readinto` takes nothing from the firmware's heap; nor does
the select.poll stand-in's ipoll, which asyncio calls at every step."""

from __future__ import annotations

import ast
from pathlib import Path

from checksuite import call

RING = Path(__file__).parent / "checks" / "uart_ring.py"
POLL_STEPS = Path(__file__).parent / "checks" / "poll_steps.py"


def test_the_receive_ring_is_fixed_ordered_and_reads_without_allocating(make_device):
    device = make_device(device_modules=[RING])
    result = device.run(5, script=call("uart_ring.run"))
    assert not result.errors, (result.errors, result.script_output)
    shown = {}
    for line in result.script_output.splitlines():
        key, _, value = line.partition(" ")
        shown[key] = value
    # Under MicroPython the heap is locked around the reads: an allocation would raise.
    assert ast.literal_eval(shown["GOT"]) == list(range(36))
    assert shown["OVER"] == "16 4"
    assert shown["EMPTY"] == "None None"
    assert shown["LINES"] == "b'AT\\r\\n' b'OK\\r\\n' b'rest' None"


def test_ipoll_hands_back_the_ready_peripherals_without_allocating(make_device):
    device = make_device(device_modules=[POLL_STEPS])
    result = device.run(5, script=call("poll_steps.run"))
    # Under MicroPython the heap is locked around each ipoll: an allocation would raise.
    assert not result.errors, (result.errors, result.script_output)
    assert "POLL 4 3 True 0" in result.script_output, result.script_output
