"""sim.speed.<interpreter>: virtual seconds per wall second for one device over a simulated
day (the application with its modem on the model's good network), boots and interpreter
start-up included. Target: a day of the reference board in 4 wall seconds or less under
MicroPython (21,600).

sim.heap_overhead_bytes: what the simulator's own modules hold in the device's interpreter heap
under MicroPython, beside the firmware's share (the models run on the host)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from musket_sim import VirtualDevice
from musket_sim.device import INTERPRETERS
from musket_sim.scenario import load_scenario

DAY_S = 86400
BOARD = "esp32-sim7080g"
RUNS = 3  # the best of three: the figure is the simulator's speed, not the machine's noise


def measure(interpreter: str, workdir: Path) -> tuple[float, float, int | None]:
    best_wall = float("inf")
    sim_heap = None
    for run in range(RUNS):
        device = VirtualDevice(BOARD, workdir / f"{interpreter}-{run}", interpreter=interpreter,
                               modem=load_scenario("good"))
        device.create_flash()
        result = device.run(DAY_S)
        if result.errors:
            raise SystemExit(f"{interpreter}: the device reported errors: {result.errors}")
        best_wall = min(best_wall, result.wall_seconds)
        sim_heap = result.sim_heap_bytes
    return DAY_S / best_wall, best_wall, sim_heap


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for interpreter in INTERPRETERS:
            speed, wall, sim_heap = measure(interpreter, Path(tmp))
            print(f"{interpreter}: a simulated day of {BOARD} in {wall:.2f} wall seconds")
            print(f"FIGURE sim.speed.{interpreter} {speed:.1f} virtual_s/wall_s")
            if sim_heap is not None:
                print(f"FIGURE sim.heap_overhead_bytes {sim_heap} bytes")


if __name__ == "__main__":
    main()
