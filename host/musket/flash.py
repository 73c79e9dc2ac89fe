"""`musket flash`: writes a build (see musket.build) to many boards at once through esptool's
Python API, one thread per port.

Per port: connect through the ROM loader (esptool's reset into download mode), read the chip
and its MAC, raise the baud rate, load esptool's flasher stub (unless --no-stub), write the
pieces compressed (esptool verifies each by MD5 and skips a piece already in flash), reset.
The ROMs of the ESP32 and later chips change rate themselves (esptool's --no-stub path does
so), so the stub's 6.5 KB go up at the fast rate, not at 115200 as in esptool's command.
esptool's messages go to the port's log file and its progress to the port's bar, through
musket.esplog. A port that fails is reported and the others carry on.

What a reflash keeps: the build's filesystem piece holds the application's scripts, but the
filesystem partition is also where a unit keeps its counters, config and credentials, and NVS
holds what ESP-IDF stores. So by default the filesystem is written only where the partition
is blank (a new unit: its first two blocks, where littlefs keeps its superblocks, read as
erased flash); a unit that has a filesystem keeps it, and NVS is never touched. With
``erase_data`` the filesystem partition is rewritten whole from the build and NVS is erased:
the unit comes out as new and needs provisioning again. In the OTA layout the build writes
the app to ota_0, so otadata is erased to make the bootloader start it.

Nothing is written until the whole build has been checked (`Plan.load`, in musket.flashplan):
every field of the manifest, each piece against its size and SHA-256, and each piece as the unit
will read it (the bootloader and the app as ESP images: magic, segments, chip id, checksum,
SHA-256; the partition table by its MD5). A bad build is a BadBuild (exit code 4) before any
port is opened. A port that fails carries the exit code of its cause: no unit answering is
PortSilent (5), another chip than the build's is WrongChip (4), anything else 1; the command
exits with the code its failed ports share, or 1 when they differ.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from musket.errors import BadInput, ExitCode, MusketError, UnitSilent
from musket.flashplan import (  # noqa: F401  (re-exported: flash.Plan, flash.BadBuild)
    ERASED,
    FILESYSTEM_PIECE,
    BadBuild,
    FlashError,
    Plan,
    Region,
)

ROM_BAUD = 115200  # every ESP32 ROM loader starts here
DEFAULT_BAUD = 921600
BLANK_PROBE_BYTES = 2 * 4096  # littlefs's two superblock copies
# USB-serial bridges found on ESP32 boards, by USB vendor id.
ESP_BRIDGES = {0x10C4: "Silicon Labs CP210x", 0x1A86: "WCH CH340/CH910x", 0x0403: "FTDI",
               0x303A: "Espressif USB-Serial/JTAG"}


class BadPorts(FlashError, BadInput):
    """The ports asked for cannot be flashed as given: none, or one listed twice."""


class WrongChip(FlashError, BadInput):
    """The unit on a port is another chip than the build is for; nothing was written to it."""

    hint = "flash that unit with a build for its board (`musket build --board ...`)"


class PortSilent(FlashError, UnitSilent):
    """No unit answered on a port: the port does not exist, the ROM loader never replied, or
    the unit stopped answering mid-transfer (a pulled cable). Worth a retry."""

    hint = "check the port, the cable and the unit's power, then flash it again"


class PortsFailed(FlashError):
    """Some ports failed; each PortResult says why. The exit code is the one their causes
    share, or 1 when they differ; the hint likewise. `lines` has one line per failed port."""

    def __init__(self, results: list[PortResult]) -> None:
        self.results = results
        failed = [r for r in results if not r.ok]
        codes, hints = {r.exit_code for r in failed}, {r.hint for r in failed}
        self.exit_code = ExitCode(codes.pop()) if len(codes) == 1 else ExitCode.FAILED
        self.lines = [f"{r.port}: {r.error}" + (f" (log: {r.log})" if r.log else "")
                      for r in failed]
        super().__init__(f"{len(failed)} of {len(results)} ports failed: "
                         + "; ".join(self.lines),
                         hint=hints.pop() if len(hints) == 1 else None)


@dataclass
class PortResult:
    """How flashing one port went; `as_dict()` is its --json entry."""

    port: str
    ok: bool = False
    chip: str | None = None
    mac: str | None = None
    seconds: float = 0.0
    error: str | None = None
    exit_code: int = 0  # when not ok, the exit code of the error's kind (musket.errors)
    hint: str | None = None  # what to do about the error, if something helps
    pieces: list[str] = field(default_factory=list)  # written, or found in flash already
    filesystem: str | None = None  # "written (was blank)", "kept", "erased and written"
    log: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# (port, bytes done, bytes total, what is happening)
ProgressCallback = Callable[[str, int, int, str], None]


class _PortSink:
    """esptool's output for one port: lines to its log file, transfers to its bar. The bar
    counts compressed bytes over the whole job, since esptool reports each piece alone."""

    def __init__(self, port: str, log_file, on_progress: ProgressCallback | None) -> None:
        self.port = port
        self.log_file = log_file
        self.on_progress = on_progress
        self.total = 0
        self.done_before = 0  # bytes of the pieces already finished
        self.current = (0, 0)  # (done, total) of the piece being written

    def line(self, text: str) -> None:
        self.log_file.write(text + "\n")
        self.log_file.flush()

    def progress(self, done: int, total: int) -> None:
        if done < self.current[0] or total != self.current[1]:
            self.done_before += self.current[1] if self.current[0] else 0
        self.current = (done, total)
        self.report("writing")

    def report(self, stage: str) -> None:
        if self.on_progress is not None:
            done = min(self.done_before + self.current[0], self.total)
            self.on_progress(self.port, done, self.total, stage)


def flash_port(port: str, plan: Plan, *, baud: int = DEFAULT_BAUD, erase_data: bool = False,
               stub: bool = True, connect_mode: str = "default-reset",
               log_dir: Path | None = None,
               on_progress: ProgressCallback | None = None) -> PortResult:
    """Flashes one port; never raises for a device problem, which is reported in the
    result."""
    from musket import esplog

    result = PortResult(port)
    log_dir = Path(log_dir or plan.folder / "logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / (_safe_name(port) + ".log")
    result.log = str(log_path)
    start = time.monotonic()
    with open(log_path, "w") as log_file, _no_hex_dumps(), esplog.bound(
            sink := _PortSink(port, log_file, on_progress)):
        esp = None
        try:
            sink.report("connecting")
            esp = _connect(port, plan, result, baud=baud, stub=stub, connect_mode=connect_mode)
            sink.report("checking")
            regions = _regions_for(esp, plan, result, erase_data)
            sink.total = sum(plan.wire_size(r) for r in regions)
            _write(esp, regions)
            result.pieces = [r.name for r in regions]
            sink.report("resetting")
            if not port.startswith("socket://"):  # a TCP socket carries no RTS line to pulse
                esp.hard_reset()
            result.ok = True
        except Exception as e:  # noqa: BLE001 - esptool raises many kinds; each ends this port only
            cause = _cause(e)
            result.error, result.hint = str(cause), cause.hint
            result.exit_code = int(cause.exit_code)
            sink.line(f"failed: {result.error}")
        finally:
            if esp is not None:
                _close(esp)
            result.seconds = round(time.monotonic() - start, 2)
            if result.ok:  # pieces already in flash were skipped, not sent
                sink.done_before, sink.current = sink.total, (0, 0)
            sink.report("done" if result.ok else "failed")
    return result


def flash_ports(ports: list[str], plan: Plan, *, on_progress: ProgressCallback | None = None,
                **options) -> list[PortResult]:
    """Flashes every port at once, one thread each; results in the order of `ports`."""
    if not ports:
        raise BadPorts("no ports to flash")
    twice = sorted({port for port in ports if ports.count(port) > 1})
    if twice:
        raise BadPorts(f"port {', '.join(twice)} is listed twice")
    results: dict[str, PortResult] = {}

    def work(port: str) -> None:
        results[port] = flash_port(port, plan, on_progress=on_progress, **options)

    threads = [threading.Thread(target=work, args=(port,), name=f"flash {port}")
               for port in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[port] for port in ports]


def find_ports(pattern: str | None = None) -> list[str]:
    """Serial ports that look like ESP32 boards: a known USB bridge, or a device path that
    matches `pattern` (a glob like '/dev/ttyUSB*')."""
    from serial.tools.list_ports import comports

    found = []
    for info in comports():
        if pattern is not None:
            if fnmatch.fnmatch(info.device, pattern):
                found.append(info.device)
        elif info.vid in ESP_BRIDGES:
            found.append(info.device)
    return sorted(found)


# --- one port, step by step -------------------------------------------------------------------


def _connect(port: str, plan: Plan, result: PortResult, *, baud: int, stub: bool,
             connect_mode: str):
    from esptool.cmds import attach_flash, detect_chip, run_stub

    esp = detect_chip(port, ROM_BAUD, connect_mode)
    _no_delay(esp)
    result.chip = esp.get_chip_description()
    chip = esp.CHIP_NAME.lower().replace("-", "")
    if chip != plan.chip:
        _close(esp)
        raise WrongChip(f"this is an {esp.CHIP_NAME}, but the build is for {plan.board} "
                        f"({plan.chip})")
    result.mac = ":".join(f"{b:02x}" for b in esp.read_mac())
    if baud != ROM_BAUD:
        esp.change_baud(baud)
    if stub:
        esp = run_stub(esp)
    attach_flash(esp)
    return esp


_HEX_LOCK = threading.Lock()


class _HexDump:
    """Stands in for esptool's HexFormatter, meant to format a packet's hex dump only when
    tracing is on; esptool 5 builds its trace lines as f-strings, so every 16 KB block is
    formatted twice (about 7 ms each) and thrown away. musket never traces, so on a thread
    that is flashing (see `_no_hex_dumps`) the dump is left out; elsewhere it is esptool's."""

    flashing = threading.local()
    esptool_formatter: type | None = None

    def __init__(self, data: bytes, *args) -> None:
        self._data, self._args = data, args

    def __str__(self) -> str:
        if getattr(self.flashing, "quiet", False):
            return f"<{len(self._data)} bytes>"
        return str(self.esptool_formatter(self._data, *self._args))


@contextlib.contextmanager
def _no_hex_dumps() -> Iterator[None]:
    """While this thread flashes, its esptool packets carry no hex dumps (see `_HexDump`)."""
    import esptool.loader

    with _HEX_LOCK:
        if esptool.loader.HexFormatter is not _HexDump:
            _HexDump.esptool_formatter = esptool.loader.HexFormatter
            esptool.loader.HexFormatter = _HexDump
    _HexDump.flashing.quiet = True
    try:
        yield
    finally:
        _HexDump.flashing.quiet = False


def _no_delay(esp) -> None:
    """Over a TCP serial server (socket://, a ser2net or a virtual device), send each packet
    at once: with Nagle's algorithm the tail of every flash block waits for the far end's
    delayed ACK, tens of milliseconds per block that a UART never spends."""
    sock = getattr(esp._port, "_socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _regions_for(esp, plan: Plan, result: PortResult, erase_data: bool) -> list[Region]:
    if erase_data:
        result.filesystem = "erased and written"
        return plan.regions(filesystem=True, erase_data=True)
    fs = plan.piece(FILESYSTEM_PIECE)
    blank = esp.flash_md5sum(fs.offset, BLANK_PROBE_BYTES) == hashlib.md5(
        ERASED * BLANK_PROBE_BYTES).hexdigest()
    result.filesystem = "written (was blank)" if blank else "kept"
    return plan.regions(filesystem=blank, erase_data=False)


def _write(esp, regions: list[Region]) -> None:
    from esptool.cmds import write_flash

    write_flash(esp, [(r.offset, r.data) for r in regions], flash_size="keep", compress=True,
                skip_flashed=True)


def _close(esp) -> None:
    port = esp._port
    sock = getattr(port, "_socket", None)
    try:
        if sock is not None:
            # pyserial's socket:// close() then sleeps 0.3 s in case the host reconnects at
            # once; closing the socket is all a serial server (or a virtual device) sees.
            port._socket = None
            port.is_open = False
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        else:
            port.close()
    except OSError:
        pass


# esptool tells its failures apart by their message only. These mean that no unit answered on
# the port: it does not exist or cannot be opened, the ROM loader never replied, or the unit
# stopped answering mid-transfer. A permission problem is not the unit's, so it comes first.
_CAUSES = (
    (re.compile(r"Permission denied"), FlashError,
     "give your user access to serial ports (on Linux: the dialout group), then log in again"),
    (re.compile(r"Could not open|Failed to connect|No serial data received|Serial data stream "
                r"stopped|Packet content transfer stopped|No more data to read|Timed out"),
     PortSilent, None),
)


def _cause(error: Exception) -> MusketError:
    """What a port's failure means for the station, as one of musket's errors: its kind gives
    the exit code and the hint."""
    import serial

    if isinstance(error, MusketError):
        return error
    text = _describe(error)
    for pattern, kind, hint in _CAUSES:
        if pattern.search(text):
            return kind(text, hint=hint)
    if isinstance(error, (serial.SerialException, ConnectionError, TimeoutError)):
        return PortSilent(text)  # the link failed mid-transfer: a pulled cable, a reset unit
    return FlashError(text)


def _describe(error: Exception) -> str:
    """esptool's message on one line, without its own hints and links."""
    lines = [line.strip() for line in str(error).strip().splitlines()]
    kept = [line for line in lines
            if line and not line.startswith(("Hint:", "For troubleshooting"))]
    return " ".join(kept) if kept else type(error).__name__


def _safe_name(port: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in port).strip("_")
