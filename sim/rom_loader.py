"""The virtual chip's ROM serial loader: what real esptool talks to when it flashes a virtual
device, over `socket://127.0.0.1:PORT` or a pty.

It speaks the protocol of esptool's "Serial Protocol" documentation for two chips, the ESP32
and the ESP32-S3, their differences as data (`ChipRom`): SLIP frames; SYNC; GET_SECURITY_INFO
(the S3's ROM answers with its chip id, 9, which is how esptool tells newer chips apart; the
ESP32's ROM does not know the command, so esptool reads its chip-detect magic word);
READ_REG/WRITE_REG over a register map with the chip-detect magic word, eFuse words (the
device's MAC, chip revision, package) and an SPI flash controller that answers JEDEC ID and
SFDP reads; SPI_ATTACH and SPI_SET_PARAMS; FLASH_BEGIN/DATA/END and the deflate variants;
SPI_FLASH_MD5; CHANGE_BAUDRATE; READ_FLASH_SLOW; RAM download (MEM_BEGIN/DATA/END). Code
downloaded to RAM and started in the chip's IRAM is taken to be esptool's flasher stub: the
loader answers "OHAI" and from then on speaks the stub's dialect (2 status bytes, raw MD5,
ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE); a jump outside IRAM (code built for
another chip) crashes the chip back into its ROM loader, without OHAI. Bytes land in the
device's flash image file with NOR semantics; a write past the end of flash, a bad checksum, a
sequence gap or a broken deflate stream is refused with the ROM's (or the stub's) error code,
never written.

The link is paced like a UART: 10 bits per byte at the current baud rate, each direction on
its own, starting at 115200 after every reset and following CHANGE_BAUDRATE.

Written here rather than taken from PyPI's esp32-mock-bootloader (0.3.0, evaluated): that mock
keeps flash in one process-wide buffer, gives every device of a chip the same MAC, acknowledges
CHANGE_BAUDRATE without changing any pace, and reports success for a corrupt deflate stream.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pty
import re
import select
import socket
import struct
import threading
import time
import tty
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from musket.errors import MusketError

ROM_BAUD = 115200  # the ROM loader's UART rate after reset (ESP32 and ESP32-S3)
BITS_PER_BYTE = 10  # start bit, 8 data bits, stop bit
MAX_BAUD = 5_000_000  # the UART's ceiling (ESP32 and ESP32-S3)
SECTOR = 0x1000

# Command codes (esptool docs, "Commands").
FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
MEM_BEGIN, MEM_END, MEM_DATA = 0x05, 0x06, 0x07
SYNC, WRITE_REG, READ_REG = 0x08, 0x09, 0x0A
SPI_SET_PARAMS, SPI_ATTACH, READ_FLASH_SLOW, CHANGE_BAUDRATE = 0x0B, 0x0D, 0x0E, 0x0F
FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, FLASH_DEFL_END = 0x10, 0x11, 0x12
SPI_FLASH_MD5, GET_SECURITY_INFO = 0x13, 0x14
ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE = 0xD0, 0xD1, 0xD2, 0xD3
_STUB_ONLY = (ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE)
_DATA_COMMANDS = (FLASH_DATA, MEM_DATA, FLASH_DEFL_DATA)  # carry the XOR checksum
CHECKSUM_SEED = 0xEF
SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32
SYNC_VALUE = 0x20120707  # the ROM echoes this in the value field of its SYNC replies
OHAI = b"OHAI"  # the stub's one unsolicited packet: it is running

# Failures as (ROM error, stub error) pairs; the status byte before them is 1.
INVALID = (0x05, 0xC3)  # message invalid / invalid command
UNSUPPORTED = (0x05, 0xFF)
BAD_CHECKSUM = (0x07, 0xC1)
BAD_LENGTH = (0x05, 0xC0)
WRITE_FAILED = (0x08, 0xC4)
NOT_IN_FLASH_MODE = (0x06, 0xC6)
INFLATE_ERROR = (0x0B, 0xC7)
TOO_MUCH_DATA = (0x05, 0xC9)
READ_LENGTH = (0x0A, 0xC0)

SLIP_END, SLIP_ESC, SLIP_ESC_END, SLIP_ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD


class LoaderError(MusketError):
    """The ROM loader could not be started."""


class _Refused(Exception):
    def __init__(self, codes: tuple[int, int], why: str) -> None:
        super().__init__(why)
        self.codes = codes


def slip_encode(payload: bytes) -> bytes:
    body = payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


class SlipReader:
    """Splits a byte stream into SLIP frames; bytes between frames are line noise."""

    def __init__(self) -> None:
        self._frame: bytearray | None = None

    def feed(self, data: bytes) -> list[bytes]:
        # Split on END and unescape whole frames: a 16 KB flash block is one C-level scan,
        # not 16,000 steps of a Python loop ahead of every acknowledgement.
        frames = []
        for index, part in enumerate(data.split(b"\xc0")):
            if index:  # an END came before this part
                frame = _unescape(self._frame) if self._frame else b""
                if frame:
                    frames.append(frame)
                self._frame = bytearray()
            if self._frame is not None:
                self._frame += part
        return frames


_ESCAPE = re.compile(b"\xdb(.?)", re.DOTALL)  # ESC and what follows (nothing at a frame's end)
_UNESCAPED = {bytes([SLIP_ESC_END]): bytes([SLIP_END]), bytes([SLIP_ESC_ESC]): bytes([SLIP_ESC])}


def _unescape(raw: bytearray) -> bytes:
    if SLIP_ESC not in raw:
        return bytes(raw)
    return _ESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(1)), raw)


def transfer_seconds(nbytes: int, baud: int) -> float:
    return nbytes * BITS_PER_BYTE / baud


class PacedLink:
    """One UART connection: bytes take 10 bits each at the current baud, in each direction
    independently (full duplex). `raw_read` returns b"" when the far end has gone."""

    def __init__(self, raw_read: Callable[[float], bytes | None],
                 raw_write: Callable[[bytes], None], baud: int = ROM_BAUD) -> None:
        self._raw_read = raw_read
        self._raw_write = raw_write
        self.baud = baud
        self._rx_done = 0.0
        self._tx_done = 0.0
        self._queued: bytes | None = None  # bytes already waiting when the last ones ended
        self.bytes_in = 0
        self.bytes_out = 0

    def read(self, timeout: float,
             while_receiving: Callable[[], None] | None = None) -> bytes | None:
        """Bytes that finished arriving; None on timeout, b"" when the line is gone.

        Arrival is timed from when the bytes reach the loader, or, for bytes that were
        already waiting when the previous ones finished, from the end of those: the line
        never went idle, so sleep overshoot does not add up chunk by chunk.
        `while_receiving` is work the chip does while these bytes come in (the flasher
        stub writing the block it has just acknowledged)."""
        if self._queued is not None:
            data, self._queued = self._queued, None
            start = self._rx_done
        else:
            data = self._raw_read(timeout)
            start = time.monotonic()
        if data:
            self._rx_done = max(self._rx_done, start) + transfer_seconds(len(data), self.baud)
        if while_receiving is not None:
            while_receiving()
        if data:
            _sleep_until(self._rx_done)
            self.bytes_in += len(data)
            self._queued = self._raw_read(0)
        return data

    def write(self, data: bytes) -> None:
        self._tx_done = max(self._tx_done, time.monotonic()) + transfer_seconds(
            len(data), self.baud)
        _sleep_until(self._tx_done)
        self._raw_write(data)
        self.bytes_out += len(data)


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# --- the chip ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChipRom:
    """What one chip family's ROM shows over the serial protocol: registers that identify it,
    where its eFuses and SPI flash controller sit, how many status bytes its ROM sends, and
    whether it answers GET_SECURITY_INFO (with the chip id newer chips are detected by)."""

    name: str
    registers: dict[int, int]
    efuse_base: int
    spi_base: int
    spi_usr2: int
    spi_w0: int
    rom_status_bytes: int
    mac_words: Callable[[bytes], dict[int, int]]
    iram: tuple[int, int]  # [start, end) of internal instruction RAM, where code can run
    chip_id: int | None = None  # None: the ROM has no GET_SECURITY_INFO
    eco_version: int = 0  # the last word of GET_SECURITY_INFO's answer


def _crc8_maxim(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


def _esp32_mac_words(mac: bytes) -> dict[int, int]:
    # BLK0 words 1 and 2: MAC bytes 2..5, then bytes 0..1 with the eFuse CRC8 above them.
    return {
        0x3FF5A004: int.from_bytes(mac[2:6], "big"),
        0x3FF5A008: (_crc8_maxim(mac[::-1]) << 16) | int.from_bytes(mac[0:2], "big"),
    }


def _esp32s3_mac_words(mac: bytes) -> dict[int, int]:
    # BLOCK1 (EFUSE_RD_MAC_SPI_SYS_0/1): MAC bytes 2..5, then bytes 0..1 (SPI pad config
    # above them is zero: the default pins). No CRC: BLOCK1 has Reed-Solomon coding instead.
    return {
        0x60007044: int.from_bytes(mac[2:6], "big"),
        0x60007048: int.from_bytes(mac[0:2], "big"),
    }


# ESP32-D0WD-V3, revision v3.1 (as on an ESP32-WROVER-E), 40 MHz crystal.
ESP32 = ChipRom(
    name="esp32",
    registers={
        0x40001000: 0x00F01D83,  # chip-detect magic word
        0x3FF5A00C: (1 << 15) | (1 << 9),  # BLK0 word 3: revision bit 0, package D0WD
        0x3FF5A010: 200,  # word 4: CK8M frequency calibration
        0x3FF5A014: (1 << 20) | (1 << 24),  # word 5: revision bit 1, minor revision 1
        0x3FF6607C: 1 << 31,  # APB_CTL_DATE: revision bit 2 -> v3
        0x3FF40014: 347,  # UART_CLKDIV at 115200 baud from 40 MHz
        0x3FF5F06C: 512 << 7,  # RTC calibration: 512 * 15625 * 200 / 40 = 40 MHz
    },
    efuse_base=0x3FF5A000,
    spi_base=0x3FF42000, spi_usr2=0x24, spi_w0=0x80,
    rom_status_bytes=4,
    mac_words=_esp32_mac_words,
    iram=(0x40070000, 0x400C0000),
)

# ESP32-S3 (QFN56), revision v0.2, as on an ESP32-S3-WROOM-1-N8: flash in the module, not in
# the chip package, so no embedded flash or PSRAM in the eFuses; fixed 40 MHz crystal. The
# ROM loader listens on UART0 (the board's USB-UART bridge), not on the USB-Serial/JTAG.
ESP32S3 = ChipRom(
    name="esp32s3",
    registers={
        0x40001000: 0x00000009,  # chip-detect magic word
        0x60007050: 2 << 18,  # BLOCK1 word 3: wafer minor version (low bits) 2, package 0
        0x60007058: 0,  # BLOCK1 word 5: wafer major version 0, minor high bit 0
        0x6000706C: 1,  # BLOCK2 word 4: block version major 1 (calibration burned)
        0x3FCEF14C: 0,  # UARTDEV_BUF_NO: the loader's port, 0 = UART0 (3 USB-OTG, 4 USB-JTAG)
    },
    efuse_base=0x60007000,
    spi_base=0x60002000, spi_usr2=0x20, spi_w0=0x58,
    rom_status_bytes=4,
    mac_words=_esp32s3_mac_words,
    iram=(0x40370000, 0x403E0000),
    chip_id=9,
)
CHIPS = {"esp32": ESP32, "esp32s3": ESP32S3}
MAC_OUI = b"\x24\x0a\xc4"  # Espressif's, as on the virtual device's machine.unique_id()

# SPI NOR flash commands the controller model answers.
_RDID, _RDSFDP, _SFDP_SIGNATURE = 0x9F, 0x5A, 0x50444653
_FLASH_VENDOR = 0xC8  # GigaDevice
_SPI_CMD_USR = 1 << 18


class FlashFile:
    """The device's flash image file, as NOR flash: erase sets bytes to 0xFF, programming
    can only clear bits."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = Path(path)
        self.size = size
        if not self.path.exists() or self.path.stat().st_size != size:
            raise LoaderError(f"{self.path}: no {size}-byte flash image to serve")
        self._file = open(self.path, "r+b")  # noqa: SIM115 - open for the loader's life

    def check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise _Refused(WRITE_FAILED, f"{length} bytes at {offset:#x} do not fit "
                                         f"{self.size >> 20} MB of flash")

    def read(self, offset: int, length: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(length)

    def erase(self, offset: int, length: int) -> None:
        start = offset - offset % SECTOR
        end = min(self.size, -(-(offset + length) // SECTOR) * SECTOR)
        self.check(start, end - start)
        self._file.seek(start)
        self._file.write(b"\xff" * (end - start))
        self._file.flush()

    def program(self, offset: int, data: bytes) -> None:
        self.check(offset, len(data))
        old = self.read(offset, len(data))
        merged = (int.from_bytes(old, "little") & int.from_bytes(data, "little")).to_bytes(
            len(data), "little")
        self._file.seek(offset)
        self._file.write(merged)
        self._file.flush()

    def md5(self, offset: int, length: int) -> bytes:
        self.check(offset, length)
        return hashlib.md5(self.read(offset, length)).digest()

    def close(self) -> None:
        self._file.close()


@dataclass
class SessionLog:
    """What one connection did: for station logs and tests."""

    stub: bool = False  # the flasher stub ran
    baud: int = ROM_BAUD  # the highest rate the line ran at
    writes: list[tuple[int, int]] = field(default_factory=list)  # (offset, bytes written)
    md5_checks: int = 0
    errors: list[str] = field(default_factory=list)
    reboot: bool = False  # the host asked the chip to run its app (FLASH_END 0, RUN_USER_CODE)
    ended_by: str = ""


@dataclass
class _Download:
    """A FLASH_BEGIN/FLASH_DEFL_BEGIN or MEM_BEGIN in progress."""

    offset: int
    size: int
    blocks: int
    block_size: int
    compressed: bool = False
    seq: int = 0
    written: int = 0
    inflater: object = None


class LoaderSession:
    """The ROM loader's side of one connection, from reset to the line going quiet."""

    def __init__(self, chip: ChipRom, flash: FlashFile, mac: bytes, link: PacedLink) -> None:
        self.chip = chip
        self.flash = flash
        self.link = link
        self.log = SessionLog()
        self.mac = mac
        self.stub = False  # speaking the flasher stub's dialect rather than the ROM's
        self.registers = self._fresh_registers()
        self._spi_result = 0
        self._download: _Download | None = None
        self._ram: _Download | None = None
        self._ram_bytes = 0
        self._stop = False
        self._pending: Callable[[], None] | None = None  # a block the stub has yet to write
        self._flash_failure: _Refused | None = None  # the stub's sticky write error

    def _fresh_registers(self) -> dict[int, int]:
        registers = dict(self.chip.registers)
        registers.update(self.chip.mac_words(self.mac))
        return registers

    # -- framing -------------------------------------------------------------------------

    def serve(self, stopped: threading.Event) -> None:
        try:
            self._serve_frames(stopped)
        finally:
            self._finish_pending()

    def _serve_frames(self, stopped: threading.Event) -> None:
        reader = SlipReader()
        while not stopped.is_set() and not self._stop:
            data = self.link.read(0.05, self._finish_pending)
            if data is None:
                continue
            if not data:
                self.log.ended_by = self.log.ended_by or "closed by the host"
                return
            for frame in reader.feed(data):
                self.handle(frame)
                if self._stop:
                    return
        self.log.ended_by = self.log.ended_by or "line pulled"

    def handle(self, frame: bytes) -> None:
        self._finish_pending()  # the chip does one thing at a time: the last write first
        if len(frame) < 8 or frame[0] != 0x00:
            return  # not a request: the ROM ignores it
        command, size, checksum = struct.unpack_from("<BHI", frame, 1)
        data = frame[8:]
        value, body = 0, b""
        try:
            if len(data) != size:
                raise _Refused(BAD_LENGTH, f"command {command:#04x}: size field {size}, "
                                           f"{len(data)} bytes sent")
            if command in _DATA_COMMANDS:
                _check_data_checksum(data, checksum)
            if command in _STUB_ONLY and not self.stub:
                raise _Refused(UNSUPPORTED, f"command {command:#04x} needs the flasher stub")
            handler = self._HANDLERS.get(command)
            if handler is None:
                raise _Refused(UNSUPPORTED, f"unknown command {command:#04x}")
            result = handler(self, data)
            if result is None:
                return  # answered by the handler itself
            value, body = result
        except _Refused as refused:
            self.log.errors.append(str(refused))
            self._reply(command, 0, b"", refused.codes[1 if self.stub else 0])
            return
        self._reply(command, value, body, 0)

    def _reply(self, command: int, value: int, body: bytes, error: int) -> None:
        status = bytes([1 if error else 0, error])
        if not self.stub:
            status += b"\0" * (self.chip.rom_status_bytes - 2)
        payload = body + status
        self.link.write(slip_encode(struct.pack("<BBHI", 1, command, len(payload), value)
                                    + payload))

    # -- commands ----------------------------------------------------------------------

    def _sync(self, data: bytes):
        if data != SYNC_PAYLOAD:
            raise _Refused(INVALID, "SYNC with a wrong payload")
        # The ROM answers a SYNC several times over while its baud detection settles.
        for _ in range(7):
            self._reply(SYNC, 0 if self.stub else SYNC_VALUE, b"", 0)
        return (0 if self.stub else SYNC_VALUE), b""

    def _read_reg(self, data: bytes):
        (address,) = _words(data, 1)
        spi = address - self.chip.spi_base
        if spi == 0:
            return 0, b""  # SPI_CMD: the user command has finished
        if spi == self.chip.spi_w0:
            return self._spi_result, b""
        return self.registers.get(address, 0), b""

    def _write_reg(self, data: bytes):
        address, value, mask, _delay_us = _words(data, 4)
        old = self.registers.get(address, 0)
        self.registers[address] = (old & ~mask) | (value & mask)
        if address == self.chip.spi_base and value & _SPI_CMD_USR:
            self._run_spi_command()
        return 0, b""

    def _run_spi_command(self) -> None:
        base = self.chip.spi_base
        command = self.registers.get(base + self.chip.spi_usr2, 0) & 0xFF
        capacity = self.flash.size.bit_length() - 1  # JEDEC capacity code: log2(size)
        if command == _RDID:
            self._spi_result = _FLASH_VENDOR | (0x40 << 8) | (capacity << 16)
        elif command == _RDSFDP:
            # the header's signature at address 0, the vendor id beyond it
            address = self.registers.get(base + 0x04, 0)
            self._spi_result = _SFDP_SIGNATURE if address == 0 else _FLASH_VENDOR
        else:
            self._spi_result = 0  # status registers: idle, unprotected

    def _security_info(self, data: bytes):
        if self.chip.chip_id is None:
            raise _Refused(UNSUPPORTED, f"GET_SECURITY_INFO: not in the {self.chip.name} ROM")
        # flags (no secure boot, no secure download mode), flash_crypt_cnt 0, seven key
        # purposes (all user/empty), the chip id and the ECO version.
        return 0, struct.pack("<IB7BII", 0, 0, *([0] * 7), self.chip.chip_id,
                              self.chip.eco_version)

    def _spi_attach(self, data: bytes):
        if len(data) not in (4, 8):
            raise _Refused(INVALID, "SPI_ATTACH takes one or two words")
        return 0, b""

    def _spi_set_params(self, data: bytes):
        _words(data, 6)
        return 0, b""

    def _change_baud(self, data: bytes):
        new, _old = _words(data, 2)
        if not 300 <= new <= MAX_BAUD:
            raise _Refused(INVALID, f"baud rate {new} out of range")
        self._reply(CHANGE_BAUDRATE, 0, b"", 0)  # acknowledged at the old rate
        self.link.baud = new
        self.log.baud = max(self.log.baud, new)
        return None

    def _flash_begin(self, data: bytes, compressed: bool = False):
        erase_size, blocks, block_size, offset = _words(data[:16], 4)
        if len(data) not in (16, 20):
            raise _Refused(INVALID, "FLASH_BEGIN takes four or five words")
        if block_size == 0 and blocks:
            raise _Refused(INVALID, "FLASH_BEGIN with a zero block size")
        self.flash.check(offset, erase_size)
        # The ROM erases the whole span up front; the stub erases as it goes. Same result.
        self.flash.erase(offset, erase_size)
        self._download = _Download(offset, erase_size, blocks, block_size, compressed)
        self._flash_failure = None
        if compressed:
            self._download.inflater = zlib.decompressobj()
        return 0, b""

    def _flash_data(self, data: bytes, compressed: bool = False):
        download = self._download
        if download is None or download.compressed != compressed:
            raise _Refused(NOT_IN_FLASH_MODE, "flash data without a matching begin")
        length, seq = _words(data[:8], 2)
        block = data[16:16 + length]
        if seq != download.seq:
            raise _Refused(INVALID, f"block {seq} out of sequence (expected {download.seq})")
        if not self.stub:  # the ROM writes the block, then answers
            self._write_block(download, block)
            download.seq += 1
            return 0, b""
        # The stub answers once a block has arrived whole with a good checksum, then
        # inflates and writes it while the next one arrives (`serve`); a block that fails
        # is reported in the answer to the next one and to FLASH_END. esptool ends each
        # piece with a command the stub can only answer after its last write.
        if self._flash_failure is not None:
            self._reply(FLASH_DEFL_DATA if compressed else FLASH_DATA, 0, b"",
                        self._flash_failure.codes[1])
            return None
        download.seq += 1
        self._pending = lambda: self._write_block(download, block)
        return 0, b""

    def _write_block(self, download: _Download, block: bytes) -> None:
        if download.compressed:
            try:
                block = download.inflater.decompress(block)  # type: ignore[union-attr]
            except zlib.error as e:
                raise _Refused(INFLATE_ERROR, f"deflate stream broken: {e}") from None
            if download.written + len(block) > download.size:
                raise _Refused(TOO_MUCH_DATA, "compressed data inflates past its announced "
                                              "size")
        offset = download.offset + download.written
        self.flash.program(offset, block)
        download.written += len(block)
        self._note_write(offset, len(block))

    def _finish_pending(self) -> None:
        work, self._pending = self._pending, None
        if work is None:
            return
        try:
            work()
        except _Refused as refused:
            self.log.errors.append(str(refused))
            self._flash_failure = refused

    def _note_write(self, offset: int, length: int) -> None:
        writes = self.log.writes
        if writes and sum(writes[-1]) == offset:
            writes[-1] = (writes[-1][0], writes[-1][1] + length)
        else:
            writes.append((offset, length))

    def _flash_end(self, data: bytes, compressed: bool = False):
        # The word is 1 to run the app (leave flash mode), 0 to reboot. The ROM does either
        # by leaving for the app; the stub stays itself on 1 and on 0 restarts the chip, and
        # the chip comes back in the ROM loader (esptool's "no-reset" after a stub session).
        (run_app,) = _words(data, 1)
        self._download = None
        if not self.stub:
            self._reply(FLASH_END if not compressed else FLASH_DEFL_END, 0, b"", 0)
            self._reboot()
            return None
        failure, self._flash_failure = self._flash_failure, None
        if failure is not None:  # a block failed after it was acknowledged
            self._reply(FLASH_END if not compressed else FLASH_DEFL_END, 0, b"",
                        failure.codes[1])
            return None
        if run_app == 0:
            self._reply(FLASH_END if not compressed else FLASH_DEFL_END, 0, b"", 0)
            self._restart_in_rom()
        return None if run_app == 0 else (0, b"")

    def _restart_in_rom(self) -> None:
        """The chip resets with GPIO0 still held: its ROM loader again, at the ROM's rate."""
        self.stub = False
        self.link.baud = ROM_BAUD
        self.registers = self._fresh_registers()
        self._ram_bytes = 0

    def _reboot(self) -> None:
        self.log.reboot = True
        self.log.ended_by = "reboot into the app"
        self._stop = True

    def _md5(self, data: bytes):
        offset, length = _words(data[:8], 2)
        digest = self.flash.md5(offset, length)
        self.log.md5_checks += 1
        return 0, (digest if self.stub else digest.hex().encode())

    def _read_flash_slow(self, data: bytes):
        offset, length = _words(data, 2)
        if length > 64:
            raise _Refused(READ_LENGTH, "READ_FLASH_SLOW reads at most 64 bytes")
        self.flash.check(offset, length)
        return 0, self.flash.read(offset, length).ljust(64, b"\xff")

    def _mem_begin(self, data: bytes):
        size, blocks, block_size, offset = _words(data, 4)
        self._ram = _Download(offset, size, blocks, block_size)
        return 0, b""

    def _mem_data(self, data: bytes):
        if self._ram is None:
            raise _Refused(INVALID, "MEM_DATA without MEM_BEGIN")
        length, seq = _words(data[:8], 2)
        if seq != self._ram.seq or self._ram.written + length > self._ram.size:
            raise _Refused(INVALID, "RAM block out of sequence or past its segment")
        self._ram.seq += 1
        self._ram.written += length
        self._ram_bytes += length
        return 0, b""

    def _mem_end(self, data: bytes):
        stay, entry = _words(data, 2)
        self._ram = None
        if stay or entry == 0:
            return 0, b""
        if not self._ram_bytes:
            raise _Refused(INVALID, "MEM_END jumps to code that was never loaded")
        self._reply(MEM_END, 0, b"", 0)
        start, end = self.chip.iram
        if not start <= entry < end:
            # Code built for another chip: the CPU faults, the chip resets, no OHAI comes.
            self.log.errors.append(f"MEM_END jumps to {entry:#010x}, outside the "
                                   f"{self.chip.name} IRAM: the chip crashes and resets")
            self._restart_in_rom()
            return None
        self.stub = self.log.stub = True  # the code downloaded is esptool's flasher stub
        self.link.write(slip_encode(OHAI))
        return None

    def _erase_flash(self, data: bytes):
        self.flash.erase(0, self.flash.size)
        return 0, b""

    def _erase_region(self, data: bytes):
        offset, length = _words(data, 2)
        if offset % SECTOR or length % SECTOR:
            raise _Refused(INVALID, "ERASE_REGION needs sector-aligned offset and size")
        self.flash.erase(offset, length)
        return 0, b""

    def _read_flash(self, data: bytes):
        offset, length, packet, in_flight = _words(data, 4)
        self.flash.check(offset, length)
        if not packet or not in_flight:
            raise _Refused(INVALID, "READ_FLASH with a zero packet size or window")
        self._reply(READ_FLASH, 0, b"", 0)
        sent = acked = 0
        reader = SlipReader()
        while acked < length:
            while sent < length and (sent - acked) < packet * in_flight:
                chunk = self.flash.read(offset + sent, min(packet, length - sent))
                self.link.write(slip_encode(chunk))
                sent += len(chunk)
            incoming = self.link.read(5.0)
            if not incoming:
                self.log.errors.append("READ_FLASH: the host stopped acknowledging")
                self._stop = True
                return None
            for frame in reader.feed(incoming):
                if len(frame) == 4:
                    acked = max(acked, struct.unpack("<I", frame)[0])
        self.link.write(slip_encode(self.flash.md5(offset, length)))
        return None

    def _run_user_code(self, data: bytes):
        self._reboot()
        return None  # the chip restarts without answering

    _HANDLERS: dict[int, Callable] = {
        SYNC: _sync, READ_REG: _read_reg, WRITE_REG: _write_reg,
        GET_SECURITY_INFO: _security_info, SPI_ATTACH: _spi_attach,
        SPI_SET_PARAMS: _spi_set_params, CHANGE_BAUDRATE: _change_baud,
        FLASH_BEGIN: _flash_begin, FLASH_DATA: _flash_data, FLASH_END: _flash_end,
        FLASH_DEFL_BEGIN: lambda self, data: self._flash_begin(data, compressed=True),
        FLASH_DEFL_DATA: lambda self, data: self._flash_data(data, compressed=True),
        FLASH_DEFL_END: lambda self, data: self._flash_end(data, compressed=True),
        SPI_FLASH_MD5: _md5, READ_FLASH_SLOW: _read_flash_slow,
        MEM_BEGIN: _mem_begin, MEM_DATA: _mem_data, MEM_END: _mem_end,
        ERASE_FLASH: _erase_flash, ERASE_REGION: _erase_region, READ_FLASH: _read_flash,
        RUN_USER_CODE: _run_user_code,
    }


def _words(data: bytes, count: int) -> tuple[int, ...]:
    if len(data) < 4 * count:
        raise _Refused(INVALID, f"expected {count} words, got {len(data)} bytes")
    return struct.unpack_from(f"<{count}I", data)


def _xor_of_bytes(block: bytes) -> int:
    """All bytes XORed together, by folding the block as one integer in halves (a dozen
    big-integer steps for a 16 KB block instead of 16,384 Python ones)."""
    value, size = int.from_bytes(block, "little"), len(block)
    while size > 1:
        half = (size + 1) // 2
        value = (value & ((1 << 8 * half) - 1)) ^ (value >> 8 * half)
        size = half
    return value


def _check_data_checksum(data: bytes, checksum: int) -> None:
    if len(data) < 16:
        raise _Refused(BAD_LENGTH, "data packet shorter than its 16-byte header")
    (length,) = struct.unpack_from("<I", data)
    block = data[16:]
    if length != len(block):
        raise _Refused(BAD_LENGTH, f"data packet announces {length} bytes, holds {len(block)}")
    expected = CHECKSUM_SEED ^ _xor_of_bytes(block)
    if expected != checksum & 0xFF:
        raise _Refused(BAD_CHECKSUM, f"checksum {checksum & 0xFF:#04x}, data says "
                                     f"{expected:#04x}")


# --- serving it ----------------------------------------------------------------------------


class LoaderServer:
    """Serves a flash image's ROM loader on a loopback TCP port (`socket://` URL) or a pty,
    one connection at a time, as a UART has one peer. Every new connection meets a freshly
    reset ROM at 115200 baud (the station's auto-reset circuit). `pull()` pulls the cable."""

    def __init__(self, image: Path, flash_size: int, chip: str, mac: bytes, *,
                 port: int = 0, use_pty: bool = False,
                 on_session_end: Callable[[SessionLog], None] | None = None,
                 on_connect: Callable[[], None] | None = None) -> None:
        if chip not in CHIPS:
            raise LoaderError(f"no ROM loader model for {chip} (have: {', '.join(CHIPS)})")
        self.chip = CHIPS[chip]
        self.flash = FlashFile(image, flash_size)
        self.mac = mac
        self.sessions: list[SessionLog] = []
        self._on_session_end = on_session_end
        self._on_connect = on_connect
        self._stopped = threading.Event()
        self._connection: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._master: int | None = None
        if use_pty:
            self._master, slave = pty.openpty()
            tty.setraw(slave)
            self.url = os.ttyname(slave)
            os.close(slave)  # the host opens it by path; its closing ends a session
            target = self._serve_pty
        else:
            self._listener = socket.create_server(("127.0.0.1", port))
            # Set here, not in the thread: a server closed at once must not race the thread.
            self._listener.settimeout(0.1)
            self.url = "socket://127.0.0.1:%d" % self._listener.getsockname()[1]
            target = self._serve_tcp
        self._thread = threading.Thread(target=target, name=f"rom-loader {self.url}",
                                        daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._connection is not None

    def _finish(self, session: LoaderSession) -> None:
        self.sessions.append(session.log)
        if self._on_session_end:
            self._on_session_end(session.log)

    def _serve_tcp(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connection = connection
            if self._on_connect:
                self._on_connect()
            link = PacedLink(_socket_reader(connection), connection.sendall)
            session = LoaderSession(self.chip, self.flash, self.mac, link)
            try:
                session.serve(self._stopped)
            except OSError as e:
                session.log.ended_by = f"line error: {e}"
            finally:
                self._connection = None
                _close_quietly(connection)
            self._finish(session)

    def _serve_pty(self) -> None:
        master = self._master
        assert master is not None
        while not self._stopped.is_set():
            # Nobody has the pty open until a read stops failing with EIO.
            first = _pty_read(master, 0.05)
            if not first:
                if first == b"":
                    time.sleep(0.02)
                continue
            pending = [first]
            if self._on_connect:
                self._on_connect()

            def read(timeout: float, pending=pending) -> bytes | None:
                return pending.pop() if pending else _pty_read(master, timeout)

            link = PacedLink(read, lambda data: _pty_write(master, data))
            session = LoaderSession(self.chip, self.flash, self.mac, link)
            try:
                session.serve(self._stopped)
            except OSError as e:
                session.log.ended_by = f"line error: {e}"
            self._finish(session)

    def pull(self) -> None:
        """The cable comes out: the connection drops mid-whatever, the port goes away."""
        self._stopped.set()
        connection = self._connection
        if connection is not None:
            # An abortive close (RST), as a vanished USB adapter gives the host an error now.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _close_quietly(connection)
        if self._listener is not None:
            _close_quietly(self._listener)
        if self._master is not None:
            try:
                os.close(self._master)
            except OSError:
                pass
            self._master = None
        self._thread.join(timeout=5)
        self.flash.close()

    stop = pull


def _socket_reader(connection: socket.socket) -> Callable[[float], bytes | None]:
    def read(timeout: float) -> bytes | None:
        try:
            ready, _, _ = select.select([connection], [], [], timeout)
            if not ready:
                return None
            return connection.recv(65536)
        except (OSError, ValueError):  # ValueError: closed under us (the cable pulled)
            return b""
    return read


def _pty_read(master: int, timeout: float) -> bytes | None:
    try:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            return None
        return os.read(master, 65536)
    except OSError as e:
        if e.errno in (errno.EIO, errno.EBADF):
            return b""  # no one has the other end open (or we were pulled)
        raise
    except ValueError:
        return b""


def _pty_write(master: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(master, view):]


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def device_mac(suffix: bytes) -> bytes:
    return MAC_OUI + suffix
