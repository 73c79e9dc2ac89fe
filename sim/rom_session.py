"""The ROM loader's side of one connection: the command state machine, in the ROM's dialect
and, once esptool's flasher stub runs, in the stub's."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from musket_sim.rom_chips import ChipRom
from musket_sim.rom_flash import SECTOR, Download, FlashFile
from musket_sim.rom_link import MAX_BAUD, ROM_BAUD, PacedLink
from musket_sim.rom_protocol import (
    BAD_LENGTH,
    CHANGE_BAUDRATE,
    DATA_COMMANDS,
    ERASE_FLASH,
    ERASE_REGION,
    FLASH_BEGIN,
    FLASH_DATA,
    FLASH_DEFL_BEGIN,
    FLASH_DEFL_DATA,
    FLASH_DEFL_END,
    FLASH_END,
    GET_SECURITY_INFO,
    INVALID,
    MEM_BEGIN,
    MEM_DATA,
    MEM_END,
    NOT_IN_FLASH_MODE,
    OHAI,
    READ_FLASH,
    READ_FLASH_SLOW,
    READ_LENGTH,
    READ_REG,
    RUN_USER_CODE,
    SPI_ATTACH,
    SPI_FLASH_MD5,
    SPI_SET_PARAMS,
    STUB_ONLY,
    SYNC,
    SYNC_PAYLOAD,
    SYNC_VALUE,
    UNSUPPORTED,
    WRITE_REG,
    Refused,
    SlipReader,
    check_data_checksum,
    slip_encode,
    words,
)

# SPI NOR flash commands the controller model answers.
_RDID, _RDSFDP, _SFDP_SIGNATURE = 0x9F, 0x5A, 0x50444653
_FLASH_VENDOR = 0xC8  # GigaDevice
_SPI_CMD_USR = 1 << 18


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

    def note_write(self, offset: int, length: int) -> None:
        """A write, merged into the last one when it continues it."""
        if self.writes and sum(self.writes[-1]) == offset:
            self.writes[-1] = (self.writes[-1][0], self.writes[-1][1] + length)
        else:
            self.writes.append((offset, length))


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
        self._download: Download | None = None
        self._ram: Download | None = None
        self._ram_bytes = 0
        self._stop = False
        self._pending: Callable[[], None] | None = None  # a block the stub has yet to write
        self._flash_failure: Refused | None = None  # the stub's sticky write error

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
                raise Refused(BAD_LENGTH, f"command {command:#04x}: size field {size}, "
                                           f"{len(data)} bytes sent")
            if command in DATA_COMMANDS:
                check_data_checksum(data, checksum)
            if command in STUB_ONLY and not self.stub:
                raise Refused(UNSUPPORTED, f"command {command:#04x} needs the flasher stub")
            handler = self._HANDLERS.get(command)
            if handler is None:
                raise Refused(UNSUPPORTED, f"unknown command {command:#04x}")
            result = handler(self, data)
            if result is None:
                return  # answered by the handler itself
            value, body = result
        except Refused as refused:
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
            raise Refused(INVALID, "SYNC with a wrong payload")
        # The ROM answers a SYNC several times over while its baud detection settles.
        for _ in range(7):
            self._reply(SYNC, 0 if self.stub else SYNC_VALUE, b"", 0)
        return (0 if self.stub else SYNC_VALUE), b""

    def _read_reg(self, data: bytes):
        (address,) = words(data, 1)
        spi = address - self.chip.spi_base
        if spi == 0:
            return 0, b""  # SPI_CMD: the user command has finished
        if spi == self.chip.spi_w0:
            return self._spi_result, b""
        return self.registers.get(address, 0), b""

    def _write_reg(self, data: bytes):
        address, value, mask, _delay_us = words(data, 4)
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
            raise Refused(UNSUPPORTED, f"GET_SECURITY_INFO: not in the {self.chip.name} ROM")
        # flags (no secure boot, no secure download mode), flash_crypt_cnt 0, seven key
        # purposes (all user/empty), the chip id and the ECO version.
        return 0, struct.pack("<IB7BII", 0, 0, *([0] * 7), self.chip.chip_id,
                              self.chip.eco_version)

    def _spi_attach(self, data: bytes):
        if len(data) not in (4, 8):
            raise Refused(INVALID, "SPI_ATTACH takes one or two words")
        return 0, b""

    def _spi_set_params(self, data: bytes):
        words(data, 6)
        return 0, b""

    def _change_baud(self, data: bytes):
        new, _old = words(data, 2)
        if not 300 <= new <= MAX_BAUD:
            raise Refused(INVALID, f"baud rate {new} out of range")
        self._reply(CHANGE_BAUDRATE, 0, b"", 0)  # acknowledged at the old rate
        self.link.baud = new
        self.log.baud = max(self.log.baud, new)
        return None

    def _flash_begin(self, data: bytes, compressed: bool = False):
        erase_size, blocks, block_size, offset = words(data[:16], 4)
        if len(data) not in (16, 20):
            raise Refused(INVALID, "FLASH_BEGIN takes four or five words")
        if block_size == 0 and blocks:
            raise Refused(INVALID, "FLASH_BEGIN with a zero block size")
        self.flash.check(offset, erase_size)
        # The ROM erases the whole span up front; the stub erases as it goes. Same result.
        self.flash.erase(offset, erase_size)
        self._download = Download(offset, erase_size, blocks, block_size, compressed)
        self._flash_failure = None
        return 0, b""

    def _flash_data(self, data: bytes, compressed: bool = False):
        download = self._download
        if download is None or download.compressed != compressed:
            raise Refused(NOT_IN_FLASH_MODE, "flash data without a matching begin")
        length, seq = words(data[:8], 2)
        block = data[16:16 + length]
        if seq != download.seq:
            raise Refused(INVALID, f"block {seq} out of sequence (expected {download.seq})")
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

    def _write_block(self, download: Download, block: bytes) -> None:
        self.log.note_write(*download.write_block(self.flash, block))

    def _finish_pending(self) -> None:
        work, self._pending = self._pending, None
        if work is None:
            return
        try:
            work()
        except Refused as refused:
            self.log.errors.append(str(refused))
            self._flash_failure = refused

    def _flash_end(self, data: bytes, compressed: bool = False):
        # The word is 1 to run the app (leave flash mode), 0 to reboot. The ROM does either
        # by leaving for the app; the stub stays itself on 1 and on 0 restarts the chip, and
        # the chip comes back in the ROM loader (esptool's "no-reset" after a stub session).
        (run_app,) = words(data, 1)
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
        offset, length = words(data[:8], 2)
        digest = self.flash.md5(offset, length)
        self.log.md5_checks += 1
        return 0, (digest if self.stub else digest.hex().encode())

    def _read_flash_slow(self, data: bytes):
        offset, length = words(data, 2)
        if length > 64:
            raise Refused(READ_LENGTH, "READ_FLASH_SLOW reads at most 64 bytes")
        self.flash.check(offset, length)
        return 0, self.flash.read(offset, length).ljust(64, b"\xff")

    def _mem_begin(self, data: bytes):
        size, blocks, block_size, offset = words(data, 4)
        self._ram = Download(offset, size, blocks, block_size)
        return 0, b""

    def _mem_data(self, data: bytes):
        if self._ram is None:
            raise Refused(INVALID, "MEM_DATA without MEM_BEGIN")
        length, seq = words(data[:8], 2)
        if seq != self._ram.seq or self._ram.written + length > self._ram.size:
            raise Refused(INVALID, "RAM block out of sequence or past its segment")
        self._ram.seq += 1
        self._ram.written += length
        self._ram_bytes += length
        return 0, b""

    def _mem_end(self, data: bytes):
        stay, entry = words(data, 2)
        self._ram = None
        if stay or entry == 0:
            return 0, b""
        if not self._ram_bytes:
            raise Refused(INVALID, "MEM_END jumps to code that was never loaded")
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
        offset, length = words(data, 2)
        if offset % SECTOR or length % SECTOR:
            raise Refused(INVALID, "ERASE_REGION needs sector-aligned offset and size")
        self.flash.erase(offset, length)
        return 0, b""

    def _read_flash(self, data: bytes):
        offset, length, packet, in_flight = words(data, 4)
        self.flash.check(offset, length)
        if not packet or not in_flight:
            raise Refused(INVALID, "READ_FLASH with a zero packet size or window")
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
