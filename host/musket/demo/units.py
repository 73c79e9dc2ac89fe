"""The demo's small fleet: six units over the three boards, each a virtual device whose modem
model holds its SIM (ICCID) and its own IMEI, and the processes that run them.

Every process the demo starts is a `Unit`'s `musket sim run` (in a session of its own, so
that the firmware's interpreter ends with it) or one of the broker or loader processes the
stages hold; `Units.stop_all` ends them, on success, failure or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from musket.boards import Board, load_board
from musket.errors import UnitSilent
from musket_sim.rom_loader import device_mac

CONSOLE_START_TIMEOUT_S = 30  # a MicroPython unit on a busy 2-core machine boots in ~2 s
STOP_TIMEOUT_S = 15


@dataclass(frozen=True)
class UnitSpec:
    name: str
    board: str
    interpreter: str
    seed: int  # the last bytes of the unit's MAC, and every random draw of its run
    iccid: str
    imei: str
    customer: str


# The refused unit's modem holds a SIM that is already in unit-1: a card moved between boards
# on the line, which provisioning must refuse. Every unit runs the flashed image under the
# real MicroPython interpreter at its board's heap: the image holds the application as .mpy
# bytecode in its ROMFS partition, which only MicroPython runs.
FLEET = (
    UnitSpec("unit-1", "esp32-sim7080g", "micropython", 101, "8949019237115900018",
             "869715050000010", "cafe-aurora"),
    UnitSpec("unit-2", "esp32-sim7080g", "micropython", 102, "8949019237115900026",
             "869715050000028", "cafe-aurora"),
    UnitSpec("unit-3", "esp32-a7670", "micropython", 103, "8949019237115900034",
             "861234050000036", "bistro-lumen"),
    UnitSpec("unit-4", "esp32-a7670", "micropython", 104, "8949019237115900042",
             "861234050000044", "bistro-lumen"),
    UnitSpec("unit-5", "esp32s3-bg95", "micropython", 105, "8949019237115900059",
             "866123050000051", "office-north"),
    UnitSpec("unit-6", "esp32s3-bg95", "micropython", 106, "8949019237115900018",
             "866123050000069", "office-north"),
)


@dataclass
class Unit:
    spec: UnitSpec
    folder: Path
    start_day: str  # YYYY-MM-DD: the virtual calendar's first day in every run
    device_id: str | None = None
    refused: str | None = None  # why provisioning refused the unit
    console: str | None = None
    proc: subprocess.Popen | None = None
    runs: list[dict] = field(default_factory=list)  # each run's `musket sim run --json`
    counted: tuple = ()  # (brews, litres) the fleet holds, (brews, litres) the model played
    data: tuple = ()  # (bytes the device reported, bytes its modem model carried)
    # A unit's work runs in a thread of its own while the demo's clean-up may end its run
    # (cancel): its run is started and ended under this lock, and no run starts once cancelled.
    _power: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False,
                                        compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def board(self) -> Board:
        return load_board(self.spec.board)

    @property
    def image(self) -> Path:
        return self.folder / "flash.bin"

    @property
    def mac(self) -> bytes:
        return device_mac(self.spec.seed.to_bytes(3, "big"))

    def scenario_file(self, extra: dict | None = None, name: str = "scenario") -> Path:
        """The unit's modem model: its SIM and IMEI, plus what the network does."""
        path = self.folder / f"{name}.json"
        path.write_text(json.dumps({"iccid": self.spec.iccid, "imei": self.spec.imei,
                                    **(extra or {})}))
        return path

    def _start(self, *, console: bool, speed: str, span: str, scenario: Path | None,
               usage: str, extra: tuple[str, ...]) -> Path:
        self.power_off()
        out = self.folder / "sim-stdout.txt"
        command = [str(Path(sys.executable).with_name("musket")), "sim", "run",
                   *(["--console"] if console else []),
                   "--keep-flash", "--for", span, "--speed", speed,
                   "--workdir", str(self.folder), "--board", self.spec.board,
                   "--interpreter", self.spec.interpreter, "--seed", str(self.spec.seed),
                   "--scenario", str(scenario or self.scenario_file()), "--usage", usage,
                   "--start", self.start_day, "--json", *extra]
        with self._power, open(out, "wb") as stdout:
            if self._cancelled.is_set():
                raise UnitSilent(f"{self.name}: stopped before its run began")
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return out

    def power_on(self, *, speed: str, span: str, scenario: Path | None = None,
                 usage: str = "none", extra: tuple[str, ...] = ()) -> str:
        """Boots what is in the unit's flash with its console on a pty; returns the pty."""
        out = self._start(console=True, speed=speed, span=span, scenario=scenario,
                          usage=usage, extra=extra)
        deadline = time.monotonic() + CONSOLE_START_TIMEOUT_S
        while time.monotonic() < deadline and not self._cancelled.is_set():
            first, newline, _ = out.read_text(errors="replace").partition("\n")
            if newline and first.startswith("console: "):
                self.console = first.removeprefix("console: ").strip()
                return self.console
            proc = self.proc
            if proc is None or proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = out.read_text(errors="replace")[-400:]
        self.power_off()
        raise UnitSilent(f"{self.name}: the virtual device did not open its console: {tail}")

    def cancel(self) -> None:
        """Ends the unit's run and lets no other begin: the demo is stopping (Ctrl-C), and
        whatever works with the unit in another thread ends with it."""
        self._cancelled.set()
        self.power_off()

    def live(self, *, span: str, scenario: Path, usage: str, extra: tuple[str, ...] = (),
             speed: str = "max") -> None:
        """Runs the unit on its own for `span` of virtual time, as fast as it goes (or at
        `speed` virtual seconds per wall second)."""
        self._start(console=False, speed=speed, span=span, scenario=scenario, usage=usage,
                    extra=extra)

    def virtual_now(self) -> float:
        """The virtual time of the unit's newest console line (its run's progress)."""
        try:
            with open(self.folder / "console.log", "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 4096))
                tail = f.read().decode(errors="replace")
        except OSError:
            return 0.0
        for line in reversed(tail.splitlines()):
            if line.startswith("[") and "]" in line:
                try:
                    return float(line[1:line.index("]")])
                except ValueError:
                    continue
        return 0.0

    def run_summary(self) -> dict | None:
        """The `musket sim run --json` summary of the unit's last run, once it has ended."""
        text = (self.folder / "sim-stdout.txt").read_text(errors="replace")
        start = 0 if text.startswith("{") else text.find("\n{")
        if start < 0:
            return None
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:  # a run killed while printing: no summary to keep
            return None

    def wait(self, timeout: float) -> bool:
        """Waits for the unit's run to end by itself; True when it did."""
        proc = self.proc
        if proc is None:
            return True
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def power_off(self) -> None:
        """Ends the unit's run (if it has not ended) and keeps its summary in `runs`."""
        with self._power:
            proc, self.proc = self.proc, None
            self.console = None
            if proc is None:
                return
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            summary = self.run_summary()
            if summary is not None:
                self.runs.append(summary)


def make_fleet(workdir: Path, start_day: str) -> list[Unit]:
    units = []
    for spec in FLEET:
        folder = workdir / "units" / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        units.append(Unit(spec, folder, start_day))
    return units
