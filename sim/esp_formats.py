"""ESP-IDF app images as the virtual chip's ROM and bootloader read them at boot: the 0xE9
header, segments, XOR checksum, optional SHA-256, and the app description inside (layout from
ESP-IDF's "App Image Format" docs). The partition table format is `musket.parttable`'s.

Writing images is esptool's job (`esptool.bin_image`, used by `stand_in_image`); reading them
here is the chip's, on its own code, so a flaw on either side shows up.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

IMAGE_MAGIC = 0xE9
CHECKSUM_SEED = 0xEF
_HEADER = struct.Struct("<BBBBI")  # magic, segment count, spi mode, speed/size, entry point
_EXTENDED = struct.Struct("<B3sHBHH4sB")  # ..., chip id, min rev, min/max rev full, hash flag
_SEGMENT = struct.Struct("<II")  # load address, length
_MAX_SEGMENTS = 16  # ESP-IDF's ESP_IMAGE_MAX_SEGMENTS
APP_DESC_MAGIC = 0xABCD5432
_APP_DESC = struct.Struct("<IIII32s32s16s16s32s")  # magic, secure version, reserved x2,
# version, project name, time, date, idf version (the rest of esp_app_desc_t is not read)

# Image chip ids (esp_chip_id_t) and where each chip's ROM looks for the bootloader.
CHIP_IDS = {"esp32": 0x0000, "esp32s3": 0x0009}
BOOTLOADER_OFFSETS = {"esp32": 0x1000, "esp32s3": 0x0}


@dataclass(frozen=True)
class LoadAddresses:
    """Where a chip's images load, from its memory map: the bootloader runs from internal
    RAM; an app's description opens its flash-mapped data (DROM) and its code runs from
    IRAM."""

    boot_entry: int
    boot_dram: int
    boot_iram: int
    app_entry: int
    app_drom: int
    app_iram: int


LOAD_ADDRESSES = {
    "esp32": LoadAddresses(boot_entry=0x40080400, boot_dram=0x3FFF0000, boot_iram=0x40078000,
                           app_entry=0x40081000, app_drom=0x3F400020, app_iram=0x40080000),
    "esp32s3": LoadAddresses(boot_entry=0x403C9400, boot_dram=0x3FCE3000,
                             boot_iram=0x403C9000, app_entry=0x40375000,
                             app_drom=0x3C000020, app_iram=0x40374000),
}


class ImageError(ValueError):
    """Flash content that the ROM or the bootloader would refuse; the message says why in the
    words of the chip's boot log."""


@dataclass
class AppImage:
    entry: int
    chip_id: int
    segments: list[tuple[int, int]]  # (load address, length)
    length: int  # bytes the image takes in flash, checksum and digest included
    project: str = ""
    version: str = ""
    idf_version: str = ""


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def xor_of(data: bytes) -> int:
    """All bytes XORed together, folded in halves on one big integer (fast for megabytes)."""
    value, width = int.from_bytes(data, "little"), len(data)
    while width > 1:
        half = (width + 1) // 2
        value = (value >> (8 * half)) ^ (value & ((1 << (8 * half)) - 1))
        width = half
    return value


def read_image(flash: bytes, offset: int, chip: str, limit: int | None = None) -> AppImage:
    """Checks the image at `offset` as ESP-IDF's bootloader does (magic, chip id, segments,
    checksum, SHA-256 when appended) and returns what it holds."""
    end = len(flash) if limit is None else min(len(flash), offset + limit)
    head = flash[offset:offset + _HEADER.size + _EXTENDED.size]
    if len(head) < _HEADER.size + _EXTENDED.size:
        raise ImageError(f"image at {offset:#x} lies beyond the end of flash")
    magic, count, _mode, _speed, entry = _HEADER.unpack_from(head)
    if magic != IMAGE_MAGIC:
        raise ImageError(f"image at {offset:#x} has invalid magic byte {magic:#04x}"
                         f"{' (nothing flashed here?)' if magic == 0xFF else ''}")
    fields = _EXTENDED.unpack_from(head, _HEADER.size)
    chip_id, hash_appended = fields[2], fields[7]
    if chip_id != CHIP_IDS[chip]:
        raise ImageError(f"image at {offset:#x}: chip id {chip_id} does not match {chip} "
                         f"({CHIP_IDS[chip]})")
    if not 0 < count <= _MAX_SEGMENTS:
        raise ImageError(f"image at {offset:#x} has {count} segments")
    pos = offset + _HEADER.size + _EXTENDED.size
    checksum = CHECKSUM_SEED
    segments = []
    first_data = b""
    for index in range(count):
        if pos + _SEGMENT.size > end:
            raise ImageError(f"image at {offset:#x}: segment {index} header is truncated")
        address, length = _SEGMENT.unpack_from(flash, pos)
        pos += _SEGMENT.size
        if pos + length > end:
            raise ImageError(f"image at {offset:#x}: segment {index} ({length} bytes at "
                             f"{address:#010x}) runs past the partition")
        data = flash[pos:pos + length]
        checksum ^= xor_of(data)
        if index == 0:
            first_data = bytes(data[:_APP_DESC.size])
        segments.append((address, length))
        pos += length
    pos += 15 - (pos - offset) % 16  # the checksum byte ends a 16-byte block
    if pos >= end:
        raise ImageError(f"image at {offset:#x}: checksum lies beyond the partition")
    if flash[pos] != checksum:
        raise ImageError(f"image at {offset:#x}: checksum failed. Calculated {checksum:#04x} "
                         f"read {flash[pos]:#04x}")
    pos += 1
    if hash_appended:
        digest = flash[pos:pos + 32]
        if len(digest) < 32 or hashlib.sha256(flash[offset:pos]).digest() != digest:
            raise ImageError(f"image at {offset:#x}: image hash failed - image is corrupt")
        pos += 32
    image = AppImage(entry, chip_id, segments, pos - offset)
    if len(first_data) == _APP_DESC.size:
        desc = _APP_DESC.unpack(first_data)
        if desc[0] == APP_DESC_MAGIC:
            image.version, image.project = _cstr(desc[4]), _cstr(desc[5])
            image.idf_version = _cstr(desc[8])
    return image


def app_description(project: str, version: str, idf_version: str = "v5.4.1") -> bytes:
    """An esp_app_desc_t as the first bytes of an app's first (DROM) segment; 256 bytes."""
    desc = _APP_DESC.pack(APP_DESC_MAGIC, 0, 0, 0, version.encode()[:31],
                          project.encode()[:31], b"00:00:00", b"Jan  1 2026",
                          idf_version.encode()[:31])
    return desc + b"\0" * (256 - len(desc))


def stand_in_image(chip: str, project: str, version: str, payload_size: int = 4096,
                   bootloader: bool = False, code: bytes | None = None) -> bytes:
    """A small valid image built by esptool's own image writer: a stand-in for ESP-IDF's
    bootloader or for a MicroPython firmware (`payload_size` bytes of code after the app
    description, so tests can make it as large as they like; `code` in place of a pattern
    that compresses to almost nothing: musket.espimage.code_like's, which compresses as
    machine code does)."""
    from esptool.bin_image import ELFSection, ESP32FirmwareImage
    from esptool.targets import CHIP_DEFS

    image = ESP32FirmwareImage()
    image.ROM_LOADER = CHIP_DEFS[chip]
    image.chip_id = CHIP_IDS[chip]
    at = LOAD_ADDRESSES[chip]
    if code is None:
        code = bytes((i * 7 + 3) & 0xFF for i in range(payload_size))
    if bootloader:  # RAM-loaded only, as ESP-IDF's bootloader is
        image.append_digest = True
        image.entrypoint = at.boot_entry
        image.segments = [ELFSection(b".dram0.data", at.boot_dram, code[:1024], 0),
                          ELFSection(b".iram0.text", at.boot_iram, code, 0)]
    else:
        image.entrypoint = at.app_entry
        image.segments = [
            ELFSection(b".flash.appdesc", at.app_drom, app_description(project, version), 0),
            ELFSection(b".iram0.text", at.app_iram, code, 0),
        ]
    return image.save(None)
