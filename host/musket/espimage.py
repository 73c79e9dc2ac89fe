"""MicroPython firmware binaries as the build takes them: a release ``.bin`` split into its
bootloader and app, or an app image alone.

MicroPython's ESP32 release ``.bin`` files are merged images: the second-stage bootloader at
the chip's bootloader offset (0x1000 on the ESP32, 0x0 on the ESP32-S3), a partition table at
0x8000 and the app at 0x10000, the file starting at the bootloader offset. The build keeps
the bootloader and the app and writes the board's own partition table. Images are parsed and
checked (checksum, SHA-256, chip id) by esptool's own image reader.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from musket.errors import BadInput

PARTITION_TABLE_OFFSET = 0x8000
APP_OFFSET = 0x10000  # where MicroPython's release images put the app
PARTITION_TABLE_MAGIC = b"\xaa\x50"
DIGEST_SIZE = 32
CHECKSUM_LINE = 16  # the checksum byte ends a 16-byte line


class ImageError(BadInput):
    """A firmware binary is not an ESP image of the kind expected."""


def _chip_class(chip: str):
    from esptool.targets import CHIP_DEFS

    try:
        return CHIP_DEFS[chip]
    except KeyError:
        raise ImageError(f"esptool does not know chip {chip!r}") from None


def bootloader_offset(chip: str) -> int:
    """Where the chip's ROM looks for the second-stage bootloader."""
    return _chip_class(chip).BOOTLOADER_FLASH_OFFSET


def image_length(data: bytes, chip: str, where: str = "image") -> int:
    """Bytes the ESP image at the start of `data` takes (segments, checksum, digest), after
    checking it as the chip's bootloader will: the magic byte, every segment within the data,
    the chip id, the XOR checksum, then the appended SHA-256 if the image declares one. esptool
    reads the image. Bytes after the image (padding) are allowed."""
    from esptool.bin_image import LoadFirmwareImage
    from esptool.util import FatalError

    if not data or data[0] != 0xE9:
        first = f"{data[0]:#04x}" if data else "nothing"
        raise ImageError(f"{where}: not an ESP image (starts with {first}, expected 0xe9)")
    try:
        image = LoadFirmwareImage(chip, data)
    except (TypeError, struct.error):  # esptool read past the end: a header or the checksum
        raise ImageError(f"{where}: not a valid ESP image: it ends early (cut short?)") from None
    except (FatalError, ValueError, IndexError) as e:
        raise ImageError(f"{where}: not a valid ESP image: {e}") from None
    expected = _chip_class(chip).IMAGE_CHIP_ID
    if image.chip_id != expected:
        raise ImageError(f"{where}: built for another chip (image chip id {image.chip_id}), "
                         f"but the board's chip is {chip}")
    if image.checksum != image.calculate_checksum():
        raise ImageError(f"{where}: checksum does not match; the file is damaged")
    if image.append_digest:
        if len(image.stored_digest) < DIGEST_SIZE:
            raise ImageError(f"{where}: not a valid ESP image: it ends inside its SHA-256 "
                             f"(cut short?)")
        if image.stored_digest != image.calc_digest:
            raise ImageError(f"{where}: SHA-256 does not match; the file is damaged")
    last = image.segments[-1]
    end = last.file_offs + 8 + len(last.data)
    end += CHECKSUM_LINE - end % CHECKSUM_LINE
    return end + (DIGEST_SIZE if image.append_digest else 0)


@dataclass(frozen=True)
class FirmwareParts:
    """The bootloader and app a MicroPython firmware binary provides."""

    kind: str  # "release" (bootloader + table + app) or "app"
    bootloader: bytes | None
    app: bytes


def split_firmware(data: bytes, chip: str, where: str = "firmware") -> FirmwareParts:
    """Bootloader and app from a MicroPython release binary, or the app alone from an app
    image. A release binary is recognised by a partition table at 0x8000 (counted from the
    chip's bootloader offset) with an app image at 0x10000."""
    base = bootloader_offset(chip)
    table_at, app_at = PARTITION_TABLE_OFFSET - base, APP_OFFSET - base
    if len(data) > app_at and data[table_at:table_at + 2] == PARTITION_TABLE_MAGIC:
        boot = image_length(data, chip, f"{where} (bootloader at {base:#x})")
        app = image_length(data[app_at:], chip, f"{where} (app at {APP_OFFSET:#x})")
        return FirmwareParts("release", data[:boot], data[app_at:app_at + app])
    return FirmwareParts("app", None, data[:image_length(data, chip, where)])


def stand_in_release(chip: str, table: bytes, app_size: int = 64 * 1024) -> bytes:
    """A binary shaped like a MicroPython release: the simulator's stand-in bootloader, `table`
    and an app image of about `app_size` bytes that compresses as machine code does (to about
    two thirds), all with valid headers, checksums and digests but no real code. For tests
    and benchmarks, which need the shape, the sizes and the checks, not the code."""
    from musket_sim.esp_formats import stand_in_image

    base = bootloader_offset(chip)
    boot = stand_in_image(chip, "bootloader", "1", bootloader=True)
    app = stand_in_image(chip, "micropython", "1.28", payload_size=4096)
    out = bytearray(b"\xff" * (APP_OFFSET - base))
    out[:len(boot)] = boot
    out[PARTITION_TABLE_OFFSET - base:PARTITION_TABLE_OFFSET - base + len(table)] = table
    return bytes(out) + _with_code(app, chip, app_size)


def _with_code(app: bytes, chip: str, size: int) -> bytes:
    """`app` with a flash-mapped code segment of `size` bytes added; esptool re-lays the
    image out and recomputes its checksum and digest."""
    from esptool.bin_image import ELFSection, LoadFirmwareImage

    image = LoadFirmwareImage(chip, app)
    irom = _chip_class(chip).IROM_MAP_START + 0x20
    image.segments = [ELFSection(b".seg%d" % n, s.addr, s.data, 0)
                      for n, s in enumerate(image.segments)]
    image.segments.append(ELFSection(b".flash.text", irom, code_like(size // 4 * 4), 0))
    return image.save(None)


def code_like(size: int) -> bytes:
    """Bytes with about 5 bits of entropy each: zlib takes them to about 65%, as it does an
    ESP32 MicroPython app. Derived from a hash chain, so the same size gives the same bytes."""
    out = bytearray()
    block = b"musket"
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += bytes(b & 0x1F for b in block)
    return bytes(out[:size])
