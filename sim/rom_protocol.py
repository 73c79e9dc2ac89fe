"""The ROM loader's wire protocol, as esptool's "Serial Protocol" documentation gives it:
command codes, error codes, SLIP framing and the data packets' checksum."""

from __future__ import annotations

import re
import struct

from musket.errors import MusketError

# Command codes (esptool docs, "Commands").
FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
MEM_BEGIN, MEM_END, MEM_DATA = 0x05, 0x06, 0x07
SYNC, WRITE_REG, READ_REG = 0x08, 0x09, 0x0A
SPI_SET_PARAMS, SPI_ATTACH, READ_FLASH_SLOW, CHANGE_BAUDRATE = 0x0B, 0x0D, 0x0E, 0x0F
FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, FLASH_DEFL_END = 0x10, 0x11, 0x12
SPI_FLASH_MD5, GET_SECURITY_INFO = 0x13, 0x14
ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE = 0xD0, 0xD1, 0xD2, 0xD3
STUB_ONLY = (ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE)
DATA_COMMANDS = (FLASH_DATA, MEM_DATA, FLASH_DEFL_DATA)  # carry the XOR checksum
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


class Refused(Exception):
    """A request the chip turns down, with the (ROM, stub) error codes it answers."""

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


def words(data: bytes, count: int) -> tuple[int, ...]:
    if len(data) < 4 * count:
        raise Refused(INVALID, f"expected {count} words, got {len(data)} bytes")
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


def check_data_checksum(data: bytes, checksum: int) -> None:
    if len(data) < 16:
        raise Refused(BAD_LENGTH, "data packet shorter than its 16-byte header")
    (length,) = struct.unpack_from("<I", data)
    block = data[16:]
    if length != len(block):
        raise Refused(BAD_LENGTH, f"data packet announces {length} bytes, holds {len(block)}")
    expected = CHECKSUM_SEED ^ _xor_of_bytes(block)
    if expected != checksum & 0xFF:
        raise Refused(BAD_CHECKSUM, f"checksum {checksum & 0xFF:#04x}, data says "
                                     f"{expected:#04x}")
