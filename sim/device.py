"""A virtual device: one flash image, one interpreter process per boot, a console, a clock.

The host side of the simulator. Each boot starts the chosen interpreter on the device-side
boot script (sim/chip/_simboot_mp.py or sim/chip/cpython/boot.py) with a settings file; the device
reports back on stderr in "@sim {json}" lines and exits when its boot ends (span end, reset,
power cut, deep sleep, watchdog). Virtual time, RTC memory and the reset cause carry over from
one boot to the next here.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from musket.boards import Board, load_board
from musket_sim import bootrom, interpreter
from musket_sim.console import INTERRUPT_ENV, ConsolePty
from musket_sim.coupling import Coupling
from musket_sim.flash_image import FlashImage
from musket_sim.interpreter import (  # noqa: F401 - CHIP_DIR and the others, as this module's too
    CHIP_DIR,
    INTERPRETERS,
    SimError,
    micropython_binary,
)
from musket_sim.models import modem as modem_model
from musket_sim.models import sensors as sensor_model
from musket_sim.models.world import World
from musket_sim.rom_loader import LoaderServer, SessionLog, device_mac
from musket_sim.run_record import (
    FINAL,
    MAX_STALLED_BOOTS,
    NEXT_BOOT,
    SOFT_RESET,
    BootRecord,
    Run,
    RunResult,
)

DEFAULT_EPOCH = 1767225600  # 2026-01-01T00:00:00Z: where the virtual calendar starts
US_PER_S = 1_000_000

# The device process runs in the work folder and names its files relative to it, so that the
# folder's path cannot change what the device allocates (MicroPython's heap figures).
_SETTINGS_FILE = "boot-settings.json"
_CLOCK_FILE = "clock.bin"


class VirtualDevice:
    """One virtual board with its flash image in `workdir`."""

    def __init__(self, board: Board | str, workdir: Path | str | None = None, *,
                 interpreter: str = "micropython", heap: int | None = None, seed: int = 0,
                 ota: bool = False, epoch: int = DEFAULT_EPOCH,
                 modem: dict | None = None, usage: dict | None = None,
                 models: list[Callable[[World, dict], object]] | None = None,
                 sim_modules: list[Path] | None = None) -> None:
        if interpreter not in INTERPRETERS:
            raise SimError(f"unknown interpreter {interpreter!r} (expected one of: "
                           f"{', '.join(INTERPRETERS)})")
        self.board = load_board(board) if isinstance(board, str) else board
        self.interpreter = interpreter
        # The firmware's Python heap: the board's own unless a run asks for another.
        self.heap = self.board.heap if heap is None else heap
        self.seed = seed
        self.ota = ota
        self.epoch = epoch
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="musket-sim-")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.image = self.workdir / "flash.bin"
        self.flash = FlashImage(self.board, ota, self.image)
        self.console_log = self.workdir / "console.log"
        self.virtual_us = 0
        self.rtc_memory = ""
        self.running_app = "ota_0" if ota else "factory"
        # The modem model's scenario (see musket_sim.scenario); None: no modem on the board.
        self.modem = modem
        # The sensor model's usage scenario (see musket_sim.usage_scenario); None: nothing is
        # wired to the sensors, as on a bare board.
        self.usage = usage
        # More of the board's surroundings: each is called as `install(world, settings)` at the
        # start of every run, beside the modem and sensor models (musket_sim.models.world).
        self.models = list(models or [])
        # More of the simulator on the device's side (.py files imported there before the
        # firmware starts, on the sim's side of the heap): for fidelity checks of the heap.
        self.sim_modules = [Path(p).resolve() for p in sim_modules or []]
        self.console: ConsolePty | None = None
        # The ROM loader while the device waits in download mode (serve_loader).
        self.loader: LoaderServer | None = None
        self._proc: subprocess.Popen | None = None
        self._switched_off = False
        # What the ROM and bootloader found at the last boot (app partition, image, boot log).
        self.last_boot: bootrom.BootOutcome | None = None

    # -- flash -----------------------------------------------------------------------------

    @property
    def partitions(self) -> list[dict]:
        return self.flash.partitions

    def create_flash(self, files: dict[str, bytes] | None = None,
                     with_firmware: bool = True) -> None:
        """Writes a fresh flash image: erased everywhere, with the firmware packed for this
        interpreter (its application modules in the ROMFS partition, see FlashImage.create),
        /board.json and any extra `files` on the littlefs filesystem."""
        self.running_app = "ota_0" if self.ota else "factory"  # where the build puts the app
        self.flash.create(self.interpreter, self.running_app, files, with_firmware)
        self.console_log.write_bytes(b"")
        self.virtual_us = 0

    def erase_flash(self) -> None:
        """Flash as a new chip comes: erased everywhere (nothing to boot until flashed)."""
        self.flash.erase()
        self.console_log.write_bytes(b"")
        self.virtual_us = 0

    def read_files(self) -> dict[str, bytes]:
        """Every file on the device's filesystem, read from the image as it is now."""
        return self.flash.read_files()

    # -- download mode -----------------------------------------------------------------------

    @property
    def mac(self) -> bytes:
        """The base MAC in the device's eFuses (what esptool reads), derived from the seed:
        give devices side by side different seeds."""
        return device_mac(self._mac_suffix())

    def serve_loader(self, port: int = 0, *, use_pty: bool = False,
                     on_session_end: Callable[[SessionLog], None] | None = None,
                     on_connect: Callable[[], None] | None = None) -> str:
        """Holds the device in download mode (as if GPIO0 were strapped low at reset) with its
        ROM loader on a loopback TCP port or a pty; returns `socket://127.0.0.1:PORT` or the
        pty's path for esptool's --port. A device with no flash image gets an erased one.
        Every connection meets a freshly reset ROM at 115200 baud; the bytes written land in
        the flash image, which `run` boots from. Do not `run` while a host is flashing
        (`on_connect` is the place to `reset_into_loader`, see musket_sim.station)."""
        if self.loader is not None:
            return self.loader.url
        if not self.image.exists():
            self.erase_flash()
        self._switched_off = False
        self.loader = LoaderServer(self.image, self.board.flash_size, self.board.chip,
                                   self.mac, port=port, use_pty=use_pty,
                                   on_session_end=on_session_end, on_connect=on_connect)
        return self.loader.url

    def reset_into_loader(self) -> None:
        """The auto-reset circuit pulls EN and GPIO0: a running boot ends (its run returns
        with exit reason "interrupted"), the chip waits in its ROM loader."""
        self._switched_off = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def stop(self) -> None:
        """Pulls the cable: the loader's connection drops mid-transfer (the host sees a
        serial error), the loader port goes away and a running boot loses power."""
        if self.loader is not None:
            self.loader.pull()
            self.loader = None
        self.reset_into_loader()

    # -- running ---------------------------------------------------------------------------

    def _command(self, settings_path: Path) -> tuple[list[str], dict[str, str]]:
        rom_size = self.flash.romfs_image_size() if self.interpreter == "micropython" else 0
        return interpreter.boot_command(self.interpreter, settings_path.name, self.heap,
                                        self.sim_modules, rom_size)

    def _sim_module_dirs(self) -> list[str]:
        return sorted({str(p.parent) for p in self.sim_modules})

    def open_console(self) -> str:
        """Puts the device's console on a pty; returns its path."""
        if self.console is None:
            self.console = ConsolePty()
        return self.console.path

    def run(self, span_s: float, *, script: str | None = None, cut_at_write: int | None = None,
            cut_chance: float = 0.0, speed: float | None = None,
            on_event: Callable[[dict], None] | None = None,
            max_boots: int | None = None) -> RunResult:
        """Runs the device for `span_s` virtual seconds from where its clock stands.

        `script`: source to run instead of main.py (boot ends when it returns).
        `cut_at_write`: cut power at this flash write (1-based, counted from the first boot
        of this run); the device then boots again from what reached flash.
        `cut_chance`: the chance that any one flash write is the one power fails at, drawn
        from the device's seed, so the same seed cuts at the same writes; cuts keep coming
        after every reboot, for soak tests of everything that writes flash.
        `speed`: virtual seconds per wall second; None runs as fast as the host allows.
        """
        if not self.image.exists():
            self.create_flash()
        if not self.console_log.exists():
            self.console_log.write_bytes(b"")
        run = Run(span_end_us=self.virtual_us + int(span_s * US_PER_S), script=script,
                   cut_at_write=cut_at_write, cut_chance=cut_chance, speed=speed)
        if script is not None:
            run.script_path = self.workdir / "script.py"
            run.script_path.write_text(script)
        self._switched_off = False
        run.world = self._make_world()
        while True:
            if run.mode != "raw" and not self._boot_stage(run):
                break
            coupling = Coupling(run.world, self.workdir / _CLOCK_FILE)
            settings_path = self.workdir / _SETTINGS_FILE
            settings_path.write_text(json.dumps(self._boot_settings(run, coupling)))
            coupling.start()
            try:
                exit_event, stderr_text, output = self._boot(settings_path, on_event)
            except KeyboardInterrupt:
                # Stopped from the host (Ctrl-C, SIGTERM): the device is switched off.
                exit_event = {"reason": "interrupted", "virtual_us": self._last_virtual_us,
                              **self._last_progress}
                stderr_text, output = "", b""
            finally:
                coupling.close()
            start_us = self.virtual_us
            self._absorb_boot(run, exit_event, stderr_text, output, coupling)
            if not self._next_boot(run, start_us, exit_event or {}, max_boots):
                break
        modem_figures = run.world.figures.get("modem")
        run.world.close()
        return RunResult(
            interpreter=self.interpreter, board=self.board.name, seed=self.seed,
            virtual_seconds=self.virtual_us / US_PER_S,
            wall_seconds=round(time.monotonic() - run.start_wall, 3), boots=len(run.boots),
            heap_peak_bytes=run.heap_peak if self.interpreter == "micropython" else None,
            errors=run.errors, flash_writes=run.flash_writes, exit_reason=run.reason,
            console_log=str(self.console_log),
            script_output=run.script_output.decode("utf-8", "replace"), boot_log=run.boots,
            modem=[modem_figures] if modem_figures else [],
            sim_heap_bytes=run.sim_heap if self.interpreter == "micropython" else None,
        )

    def _boot_stage(self, run: Run) -> bool:
        """The ROM and the bootloader on the flash as written; False when nothing boots."""
        outcome = bootrom.boot(self.image.read_bytes(), self.board.chip, run.reset_cause)
        # What the bootloader wrote to otadata (a slot's trial state) reaches the image first.
        with open(self.image, "r+b") as image:
            for offset, data in outcome.writes:
                image.seek(offset)
                image.write(data)
        self.last_boot = outcome
        self._console_text("\n".join(outcome.lines) + "\n")
        if outcome.bootable:
            self.running_app = outcome.app or self.running_app
            run.partitions = outcome.partitions
            return True
        boot_no = len(run.boots) + 1
        run.errors.append(f"boot {boot_no}: {outcome.error}")
        run.reason = "not_bootable"
        run.boots.append(BootRecord(boot_no, run.reset_cause, run.mode, self.virtual_us,
                                    self.virtual_us, run.reason, outcome.error))
        return False

    def _console_text(self, text: str) -> None:
        cooked = interpreter.cook_newlines(text.encode(), b"")
        with open(self.console_log, "ab") as log:
            log.write(cooked)
        if self.console:
            self.console.write(cooked)

    def _make_world(self) -> World:
        """The board's surroundings for a run: the modem and the sensors, as the scenarios
        say, on the host side of the coupling (musket_sim.coupling)."""
        world = World({"seed": self.seed, "epoch": self.epoch,
                       "board_device": self.board.to_device_dict(), "modem": self.modem,
                       "usage": self.usage_settings()})
        world.now_us = self.virtual_us
        if self.modem is not None:
            modem_model.install(world, world.settings)
        if self.usage is not None:
            sensor_model.install(world, world.settings)
        for install in self.models:
            install(world, world.settings)
        return world

    def _boot_settings(self, run: Run, coupling: Coupling) -> dict:
        """What the device-side boot script needs to know (sim/chip/_simcore.py)."""
        return {
            "image": self.image.name, "partitions": run.partitions or self.partitions,
            "virtual_us": self.virtual_us, "span_end_us": run.span_end_us, "speed": run.speed,
            "seed": self.seed, "boot": len(run.boots) + 1, "reset_cause": run.reset_cause,
            "mode": run.mode, "epoch": self.epoch, "console": self.console is not None,
            "rtc_memory": self.rtc_memory, "heap_bytes": self.heap,
            "board": self.board.summary.rstrip("."), "chip": self.board.chip,
            "micropython_version": self.board.micropython_version,
            "mac_suffix": list(self._mac_suffix()),
            "cut_at_write": (run.cut_at_write - run.flash_writes) if run.cut_at_write else -1,
            "cut_chance": run.cut_chance, "running_app": self.running_app,
            "script": run.script_path.name if run.script_path else None,
            "link": coupling.name, "clock": _CLOCK_FILE,
            "preload": [p.stem for p in self.sim_modules], "sim_path": self._sim_module_dirs(),
        }

    def usage_settings(self) -> dict | None:
        """The usage scenario as the sensor model gets it: with the board's K-factor."""
        if self.usage is None:
            return None
        k = [s.k_factor for s in self.board.sensors if s.kind == "flow_pulse"]
        return {**self.usage, "k_factor": k[0] if k else 1.0}

    def _absorb_boot(self, run: Run, exit_event: dict | None, stderr_text: str,
                     output: bytes, coupling: Coupling) -> None:
        """Takes in what one boot reported: clock, figures, errors, carried-over state."""
        boot_no = len(run.boots) + 1
        start_us = self.virtual_us
        if run.mode == "script":
            run.script_output.extend(output)
        # The clock as the device last told the models: a boot that died without its exit
        # report still had its time pass, and time never runs backwards.
        self.virtual_us = max(self.virtual_us, coupling.device_clock())
        if coupling.failure:
            run.errors.append(f"boot {boot_no}: the simulator failed: {coupling.failure}")
        if exit_event is None:
            run.reason = "crash"
            last_words = stderr_text.strip() or output.decode("utf-8", "replace").strip()
            run.errors.append(f"boot {boot_no}: the interpreter died: "
                              f"{last_words[-2000:] or 'no output'}")
        else:
            run.reason = exit_event["reason"]
            self.virtual_us = max(self.virtual_us, exit_event["virtual_us"])
            run.heap_peak = max(run.heap_peak, exit_event.get("heap_peak") or 0)
            run.sim_heap = max(run.sim_heap, exit_event.get("sim_heap_bytes") or 0)
            run.flash_writes += exit_event.get("flash_writes") or 0
            # RTC memory outlives resets and deep sleep, not a loss of power.
            self.rtc_memory = "" if run.reason == "power_cut" else (
                exit_event.get("rtc_memory") or "")
            if stderr_text.strip():
                run.errors.append(f"boot {boot_no}: {stderr_text.strip()[-2000:]}")
        for crash in self._crashes:
            run.errors.append(f"boot {boot_no}: {crash['file']} raised {crash['error']}")
        if run.reason == "wdt":
            run.errors.append(f"boot {boot_no}: watchdog reset at "
                              f"{self.virtual_us / US_PER_S:.3f} s")
        run.boots.append(BootRecord(boot_no, run.reset_cause, run.mode, start_us,
                                    self.virtual_us, run.reason,
                                    (exit_event or {}).get("detail"), self.running_app))

    def _next_boot(self, run: Run, start_us: int, exit_event: dict,
                   max_boots: int | None) -> bool:
        """Sets up the next boot after one ended; False when the run is over."""
        if run.reason in FINAL or self.virtual_us >= run.span_end_us:
            return False
        if max_boots is not None and len(run.boots) >= max_boots:
            return False
        # Injected power cuts may strike again and again at the same instant; only a device
        # that keeps failing by itself without its clock moving is stuck.
        stuck = self.virtual_us == start_us and run.reason != "power_cut"
        run.stalled = run.stalled + 1 if stuck else 0
        if run.stalled >= MAX_STALLED_BOOTS:
            run.errors.append(f"stopped after {run.stalled} boots in a row that made no "
                              "progress")
            return False
        if run.reason == "power_cut":
            run.cut_at_write = None
        if run.reason == "deepsleep":
            self.virtual_us += int(exit_event.get("detail") or 0) * 1000
        if run.reason == "soft_reset":
            run.mode = "raw" if exit_event.get("detail") == "raw" else "app"
        else:
            run.reset_cause = NEXT_BOOT.get(run.reason, SOFT_RESET)
            run.mode = "app"
        return True

    def _mac_suffix(self) -> bytes:
        return bytes([(self.seed >> 16) & 0xFF, (self.seed >> 8) & 0xFF, self.seed & 0xFF])

    def _boot(self, settings_path: Path, on_event: Callable[[dict], None] | None
              ) -> tuple[dict | None, str, bytes]:
        cmd, env = self._command(settings_path)
        self._crashes: list[dict] = []
        self._last_virtual_us = self.virtual_us
        self._last_progress: dict = {}
        notes = None
        if self.console:
            # The Ctrl-C notes' pipe (sim/console.py): its read end stays open in the device.
            notes = self.console.interrupt_pipe()
            env[INTERRUPT_ENV] = str(notes[0])
        try:
            proc = subprocess.Popen(
                cmd, env=env, cwd=self.workdir,
                stdin=subprocess.PIPE if self.console else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(notes[0],) if notes else (),
            )
        finally:
            if notes:
                os.close(notes[0])
        self._proc = proc
        if self._switched_off:
            proc.kill()
        if self.console:
            self.console.attach(proc.stdin, notes[1])
        output = bytearray()
        stdout_thread = threading.Thread(target=self._pump_console, args=(proc.stdout, output),
                                         daemon=True)
        stdout_thread.start()
        try:
            exit_event, stderr_text, output_bytes = self._follow(proc, on_event, output,
                                                                 stdout_thread)
            if self._switched_off:
                # stop(): the device lost power with its cable; not a crash of its own.
                exit_event = {"reason": "interrupted", "virtual_us": self._last_virtual_us,
                              **self._last_progress}
                stderr_text = ""
            return exit_event, stderr_text, output_bytes
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
                cooked = interpreter.cook_newlines(chunk, previous)
                previous = chunk[-1:]
                output.extend(chunk)
                log.write(cooked)
                log.flush()
                if self.console:
                    self.console.write(cooked)

    def close(self) -> None:
        if self.loader is not None:
            self.loader.pull()
            self.loader = None
        if self.console:
            self.console.close()
            self.console = None
