"""The ESP-IDF partition table binary the bootloader reads at 0x8000.

Each entry is 32 bytes, little-endian::

    magic 0xAA 0x50 | type u8 | subtype u8 | offset u32 | size u32 | name 16 bytes (NUL
    padded) | flags u32

After the entries comes one MD5 entry, ``0xEB 0xEB``, fourteen 0xFF bytes and the MD5 of all
entries before it; the rest of the table's 0xC00 bytes are 0xFF (erased flash).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

from musket.boards import Partition
from musket.errors import BadInput

ENTRY = struct.Struct("<2sBBII16sI")
ENTRY_MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"
TABLE_SIZE = 0xC00  # ESP-IDF's limit: 95 entries, the MD5 entry and an end marker
NAME_SIZE = 16
TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {
    "app": {"factory": 0x00, "test": 0x20, **{f"ota_{n}": 0x10 + n for n in range(16)}},
    "data": {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
             "efuse": 0x05, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83,
             # MicroPython's ESP32 port finds its ROMFS partition by this subtype.
             "romfs": 0x8F},
}


class PartitionTableError(BadInput):
    """A partition table cannot be encoded or a binary is not a valid table."""


def encode(partitions: Iterable[Partition]) -> bytes:
    """The table binary for `partitions`, padded with 0xFF to 0xC00 bytes."""
    entries = bytearray()
    for p in sorted(partitions, key=lambda p: p.offset):
        name = p.name.encode()
        if len(name) >= NAME_SIZE:
            raise PartitionTableError(f"partition name {p.name!r} is longer than "
                                      f"{NAME_SIZE - 1} bytes")
        try:
            kind, subtype = TYPES[p.type], SUBTYPES[p.type][p.subtype]
        except KeyError:
            raise PartitionTableError(f"partition {p.name!r}: no code for "
                                      f"{p.type}/{p.subtype}") from None
        entries += ENTRY.pack(ENTRY_MAGIC, kind, subtype, p.offset, p.size, name, 0)
    entries += MD5_MAGIC + b"\xff" * 14 + hashlib.md5(entries).digest()
    if len(entries) > TABLE_SIZE - ENTRY.size:
        raise PartitionTableError("too many partitions for one table")
    return bytes(entries) + b"\xff" * (TABLE_SIZE - len(entries))


def decode(table: bytes) -> list[Partition]:
    """The partitions in a table binary; checks the MD5 entry."""
    names = {kind: {code: name for name, code in subs.items()} for kind, subs in SUBTYPES.items()}
    kinds = {code: name for name, code in TYPES.items()}
    out = []
    for pos in range(0, len(table) - ENTRY.size + 1, ENTRY.size):
        magic = table[pos:pos + 2]
        if magic == MD5_MAGIC:
            if hashlib.md5(table[:pos]).digest() != table[pos + 16:pos + 32]:
                raise PartitionTableError("partition table MD5 does not match its entries")
            return out
        if magic != ENTRY_MAGIC:
            break
        _, kind, subtype, offset, size, name, _ = ENTRY.unpack_from(table, pos)
        kind_name = kinds.get(kind, f"{kind:#04x}")
        out.append(Partition(name=name.rstrip(b"\0").decode(), type=kind_name,
                             subtype=names.get(kind_name, {}).get(subtype, f"{subtype:#04x}"),
                             offset=offset, size=size))
    raise PartitionTableError("partition table has no MD5 entry")
