"""The device's flash image as the ROM loader writes it: NOR semantics, and a download in
progress with its deflate stream."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from musket_sim.rom_protocol import INFLATE_ERROR, TOO_MUCH_DATA, WRITE_FAILED, LoaderError, Refused

SECTOR = 0x1000


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
            raise Refused(WRITE_FAILED, f"{length} bytes at {offset:#x} do not fit "
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
class Download:
    """A FLASH_BEGIN/FLASH_DEFL_BEGIN or MEM_BEGIN in progress."""

    offset: int
    size: int
    blocks: int
    block_size: int
    compressed: bool = False
    seq: int = 0
    written: int = 0
    inflater: object = field(default=None, init=False)  # the deflate stream, if compressed

    def __post_init__(self) -> None:
        if self.compressed:
            self.inflater = zlib.decompressobj()

    def write_block(self, flash: FlashFile, block: bytes) -> tuple[int, int]:
        """Programs the next block after what came before, inflated first if the download
        is compressed; returns where it went, as (offset, bytes written)."""
        if self.compressed:
            try:
                block = self.inflater.decompress(block)  # type: ignore[union-attr]
            except zlib.error as e:
                raise Refused(INFLATE_ERROR, f"deflate stream broken: {e}") from None
            if self.written + len(block) > self.size:
                raise Refused(TOO_MUCH_DATA, "compressed data inflates past its announced "
                                             "size")
        offset = self.offset + self.written
        flash.program(offset, block)
        self.written += len(block)
        return offset, len(block)
