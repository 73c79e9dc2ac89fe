"""sim.speed.<interpreter>: virtual seconds per wall second for one device over a simulated
day (the application with its modem on the model's good network), boots and interpreter
start-up included. Target: a day in under 10 wall seconds."""

from __future__ import annotations

import tempfile
from pathlib import Path

from musket_sim import VirtualDevice
from musket_sim.device import INTERPRETERS
from musket_sim.scenario import load_scenario

DAY_S = 86400
BOARD = "esp32-sim7080g"
RUNS = 3  # the best of three: the figure is the simulator's speed, not the machine's noise


def measure(interpreter: str, workdir: Path) -> tuple[float, float]:
    best_wall = float("inf")
    for run in range(RUNS):
        device = VirtualDevice(BOARD, workdir / f"{interpreter}-{run}", interpreter=interpreter,
                               modem=load_scenario("good"))
        device.create_flash()
        result = device.run(DAY_S)
        if result.errors:
            raise SystemExit(f"{interpreter}: the device reported errors: {result.errors}")
        best_wall = min(best_wall, result.wall_seconds)
    return DAY_S / best_wall, best_wall


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for interpreter in INTERPRETERS:
            speed, wall = measure(interpreter, Path(tmp))
            print(f"{interpreter}: a simulated day of {BOARD} in {wall:.2f} wall seconds")
            print(f"FIGURE sim.speed.{interpreter} {speed:.1f} virtual_s/wall_s")


if __name__ == "__main__":
    main()
