"""The firmware's heap figure depends on the firmware alone.

The heap peak `musket sim run` reports is what a firmware team uses to decide whether a feature
fits the chip. The models run on the host (musket_sim.coupling); on the device the firmware's
share of the interpreter's heap is claimed before the simulator's own modules load. So more
simulator code on the device's side, with its names and its data, must not move the firmware's
heap peak by more than one block of MicroPython's heap (32 bytes on the 64-bit unix port).
"""

from __future__ import annotations

from musket_sim import VirtualDevice
from musket_sim.scenario import load_scenario
from musket_sim.usage_scenario import load_usage

BOARD = "esp32-sim7080g"  # the reference board, at its own heap
GC_BLOCK = 32
SPAN_S = 4 * 3600


def _bigger_simulator(path):
    # A simulator module of the size of a model: 400 names of its own and 24 KB of data.
    lines = ["_TABLE = bytearray(24 * 1024)"]
    lines += ["def _sim_extra_%d(x):\n    return x + %d" % (i, i) for i in range(400)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _heap_peak(workdir, sim_modules=()):
    device = VirtualDevice(BOARD, workdir, interpreter="micropython",
                           modem=load_scenario("good"), usage=load_usage("day"),
                           sim_modules=list(sim_modules))
    result = device.run(SPAN_S)
    assert result.errors == [], result.errors
    assert device.heap == device.board.heap
    return result


def test_more_simulator_on_the_device_does_not_move_the_firmwares_heap_peak(tmp_path):
    alone = _heap_peak(tmp_path / "alone")
    extra = _bigger_simulator(tmp_path / "_sim_extra.py")
    beside = _heap_peak(tmp_path / "beside", [extra])
    # The extra module did load, on the simulator's side of the heap.
    assert beside.sim_heap_bytes >= alone.sim_heap_bytes + 24 * 1024
    assert alone.heap_peak_bytes > 20 * 1024, "the firmware ran"
    assert abs(beside.heap_peak_bytes - alone.heap_peak_bytes) <= GC_BLOCK, (
        alone.heap_peak_bytes, beside.heap_peak_bytes)
