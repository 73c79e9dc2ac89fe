"""The ROMFS partition's image for firmware under CPython, read as MicroPython's VfsRom reads it.

The image (built by mpremote's VfsRomWriter, see musket.firmware.romfs_image) is a header,
b"\\xd2\\xcd\\x31" and the length of what follows, then records. A record is its kind and the
length of its payload, both unsigned varints (7 bits a byte, most significant first, the top
bit set on every byte but the last). A directory's payload is its name (length, bytes) and its
records; a file's is its name and one data record: the bytes themselves, or a pointer (length,
offset) into the records after the header, as MicroPython's extmod/vfs_rom.c reads one.
Padding and unknown kinds are skipped; kind 0 marks a damaged image.
"""

from __future__ import annotations

MAGIC = b"\xd2\xcd\x31"

_UNUSED = 0
_DATA_VERBATIM = 2
_DATA_POINTER = 3
_DIRECTORY = 4
_FILE = 5


class RomfsError(ValueError):
    """The image is not a ROMFS image, or a record runs past its end."""


def _uint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    """(value, index after it) of the varint at `buf[i]`."""
    value = 0
    while True:
        if i >= end:
            raise RomfsError("a length runs past the end of its record")
        byte = buf[i]
        i += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, i


def _record(buf: bytes, i: int, end: int) -> tuple[int, int, int]:
    """(kind, payload start, payload end) of the record at `buf[i]`."""
    kind, i = _uint(buf, i, end)
    length, i = _uint(buf, i, end)
    if i + length > end:
        raise RomfsError("a record runs past the end of its directory")
    return kind, i, i + length


def _name(buf: bytes, i: int, end: int) -> tuple[str, int]:
    length, i = _uint(buf, i, end)
    if i + length > end:
        raise RomfsError("a name runs past the end of its record")
    return bytes(buf[i:i + length]).decode("latin-1"), i + length


def _extent(image: bytes) -> tuple[int, int]:
    """(start, end) of the records, from the header at the start of `image`."""
    if bytes(image[:len(MAGIC)]) != MAGIC:
        raise RomfsError("no ROMFS header")
    size, start = _uint(image, len(MAGIC), len(image))
    return start, start + size


def length(head: bytes) -> int:
    """The length of the ROMFS image whose first bytes (a dozen will do) are `head`, its
    header included; 0 if there is no image."""
    try:
        return _extent(head)[1]
    except RomfsError:
        return 0


class Image:
    """A ROMFS image's files and folders, by path inside it ("app/main.py", "app"). As VfsRom
    finds nothing past a damaged record, nothing after one is listed; a file whose data cannot
    be read is left out."""

    def __init__(self, image: bytes) -> None:
        start, end = _extent(image)
        if end > len(image):
            raise RomfsError("the image is longer than what holds it")
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()
        self._walk(image, start, end, start, "")

    def kind(self, path: str) -> str | None:
        """"file", "dir" or None (no such path)."""
        if path in self.files:
            return "file"
        return "dir" if path in self.dirs else None

    def _walk(self, buf: bytes, i: int, end: int, base: int, prefix: str) -> None:
        while i < end:
            try:
                kind, body, i = _record(buf, i, end)
            except RomfsError:
                return
            if kind == _UNUSED:  # VfsRom's mark of a damaged filesystem
                return
            try:
                if kind == _DIRECTORY:
                    name, at = _name(buf, body, i)
                    self.dirs.add(prefix + name)
                    self._walk(buf, at, i, base, prefix + name + "/")
                elif kind == _FILE:
                    name, at = _name(buf, body, i)
                    self.files[prefix + name] = _data(buf, at, i, base)
            except RomfsError:
                continue


def _data(buf: bytes, i: int, end: int, base: int) -> bytes:
    # A file's first data record; padding may come before it.
    while i < end:
        kind, body, i = _record(buf, i, end)
        if kind == _UNUSED:
            break
        if kind == _DATA_VERBATIM:
            return bytes(buf[body:i])
        if kind == _DATA_POINTER:
            length, at = _uint(buf, body, i)
            offset, _ = _uint(buf, at, i)
            if base + offset + length > len(buf):
                raise RomfsError("a file points past the end of the image")
            return bytes(buf[base + offset:base + offset + length])
    raise RomfsError("a file without data")
