"""What a run of the virtual device did, boot by boot, and what follows a boot's end.

`VirtualDevice.run` keeps a `_Run` across the boots of one run and returns a `RunResult`; a
boot's exit reason decides whether another boot follows and with which reset cause.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from musket_sim.models.world import World

# Reset causes as the ESP32 port's machine.reset_cause() reports them.
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5

# What happens after a boot ends, by the reason the device gave.
NEXT_BOOT = {
    "reset": SOFT_RESET,  # machine.reset() is a software restart on the ESP32
    "power_cut": PWRON_RESET,
    "deepsleep": DEEPSLEEP_RESET,
    "wdt": WDT_RESET,
}
# "sim_failure": the simulator failed (a model, or the interpreter under the firmware); "crash":
# the device's process died without a word. Neither is something the chip did, so neither is
# played on as a reboot.
FINAL = ("span_end", "done", "interrupted", "not_bootable", "sim_failure", "crash")
# A device that dies this many times in a row without its clock moving is stuck in a loop.
MAX_STALLED_BOOTS = 5

@dataclass
class BootRecord:
    boot: int
    reset_cause: int
    mode: str
    start_virtual_us: int
    end_virtual_us: int
    reason: str
    detail: object = None
    app: str | None = None  # the app partition the bootloader started


@dataclass
class RunResult:
    """What a run of the virtual device did; `as_dict()` is the `--json` summary."""

    interpreter: str
    board: str
    seed: int
    virtual_seconds: float
    wall_seconds: float
    boots: int
    heap_peak_bytes: int | None
    errors: list[str]
    flash_writes: int
    exit_reason: str
    console_log: str
    script_output: str = ""
    boot_log: list[BootRecord] = field(default_factory=list)
    # What the modem model counted over the run (bytes over the air, per socket): one entry,
    # none without a modem.
    modem: list[dict] = field(default_factory=list)
    # What the simulator's own modules hold in the device's interpreter heap, beside the
    # firmware's share (MicroPython; None under CPython).
    sim_heap_bytes: int | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("boot_log")
        d.pop("script_output")
        return d


@dataclass
class Run:
    """The state of one `VirtualDevice.run` across its boots."""

    span_end_us: int
    script: str | None
    cut_at_write: int | None
    cut_chance: float
    speed: float | None
    start_wall: float = field(default_factory=time.monotonic)
    script_path: Path | None = None
    script_output: bytearray = field(default_factory=bytearray)
    errors: list[str] = field(default_factory=list)
    boots: list[BootRecord] = field(default_factory=list)
    heap_peak: int = 0
    sim_heap: int = 0
    flash_writes: int = 0
    reset_cause: int = PWRON_RESET
    stalled: int = 0
    reason: str = "span_end"
    world: World | None = None  # the models, for the whole run
    partitions: list[dict] | None = None  # the partition table the bootloader read

    def __post_init__(self) -> None:
        self.mode = "script" if self.script is not None else "app"
