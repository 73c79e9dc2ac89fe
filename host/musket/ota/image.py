"""The application image an update carries: the ROMFS image (MicroPython's VfsRom format) of
the firmware's modules, unpadded. For `micropython` it holds their bytecode, exactly what
`musket build` puts in a board's romfs partition; for `cpython` (virtual devices running under
CPython) the same modules' sources."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from musket import firmware
from musket.boards import ROMFS_PARTITION, ROMFS_SPARE_PARTITION, Board
from musket.errors import BadInput

SWAP_SCRATCH_BYTES = 4096  # the spare partition's last block: the swap's scratch (otaboot.py)
FLASH_BLOCK = 4096  # the flash's erase block
# An image bundle's payload: the image cut in pieces of this size, each its own zlib stream,
# the manifest's payload.segments their compressed sizes. A multiple of the erase block, so
# that each piece inflates into whole blocks of its own (app/ota/slots.py).
SEGMENT_BYTES = 64 * 1024

INTERPRETERS = ("micropython", "cpython")


class ImageError(BadInput):
    """The application image cannot be made, or does not fit a board."""


@dataclass(frozen=True)
class Image:
    data: bytes
    files: dict[str, bytes]  # device path ("app/main.mpy") → its bytes, as the image holds them

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def file_entries(self) -> list[dict]:
        """The manifest's `files`: path, size and SHA-256 of each, in path order."""
        return [{"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                for path, data in sorted(self.files.items())]


def application_image(interpreter: str, root: Path | None = None,
                      cache_dir: Path | None = None) -> Image:
    """The image of the firmware tree `root` (default: the repository's firmware/)."""
    if interpreter not in INTERPRETERS:
        raise ImageError(f"unknown interpreter {interpreter!r} (expected: "
                         f"{', '.join(INTERPRETERS)})")
    if root is not None and not Path(root, "app").is_dir():
        raise ImageError(f"{root}: not a firmware tree (no app/ folder in it)")
    root = Path(root) if root is not None else None
    cache = Path(cache_dir) if cache_dir else firmware.default_cache_dir()
    files = firmware.romfs_files(interpreter, cache, root)
    return Image(firmware.romfs_image(files), files)


def _slot_size(board: Board) -> int:
    slots = [p for p in board.partitions(True) if p.type == "app"
             and p.subtype.startswith("ota_")]
    if len(slots) < 2:
        raise ImageError(f"{board.name}'s OTA layout has no two app slots: it cannot take "
                         "image updates")
    return min(p.size for p in slots)


def payload_offset(slot_size: int, payload_size: int) -> int:
    """Where in the app slot it installs into a device downloads an image bundle's payload
    (app/ota/download.py, app/ota/slots.py): in the slot's last blocks, as far as it can be
    from the image, which is inflated into the slot from its start."""
    return slot_size - -(-payload_size // FLASH_BLOCK) * FLASH_BLOCK


def check_installs_in_place(image_size: int, segments: list[int], board: Board) -> None:
    """The device inflates an image bundle's payload where it downloaded it, into the same
    slot, a segment at a time (app/ota/slots.py): the blocks each segment's image fills must
    not hold compressed bytes of that segment or a later one, which a cut would then leave
    nothing to inflate again from."""
    room = _slot_size(board)
    payload_at = payload_offset(room, sum(segments))
    read_from = payload_at
    for k, size in enumerate(segments):
        image_end = min((k + 1) * SEGMENT_BYTES, image_size)
        image_end = -(-image_end // FLASH_BLOCK) * FLASH_BLOCK
        if payload_at < 0 or image_end > read_from // FLASH_BLOCK * FLASH_BLOCK:
            raise ImageError(
                f"the image ({image_size:,} bytes, {sum(segments):,} compressed) cannot be "
                f"installed in {board.name}'s OTA app slots ({room:,} bytes): the device "
                "inflates it in the slot it downloads it to, and the two do not fit together")
        read_from += size


def check_fits_slots(app: bytes, board: Board) -> None:
    """A firmware image fits each OTA app slot of the board's OTA layout (where an image
    update writes it)."""
    room = _slot_size(board)
    if len(app) > room:
        raise ImageError(f"the firmware image ({len(app):,} bytes) does not fit "
                         f"{board.name}'s OTA app slots ({room:,} bytes)")


def check_fits(image: bytes, boards: list[Board]) -> None:
    """The image fits where each board's update swaps it (docs/ota.md): the romfs partition,
    and the romfs_spare partition less its last block, the swap's scratch. Only a layout with
    a spare partition takes application updates."""
    for board in boards:
        rooms = []
        for ota in (False, True):
            names = {p.name: p for p in board.partitions(ota)}
            if ROMFS_SPARE_PARTITION in names and ROMFS_PARTITION in names:
                rooms.append(min(names[ROMFS_PARTITION].size,
                                 names[ROMFS_SPARE_PARTITION].size - SWAP_SCRATCH_BYTES))
        if not rooms:
            raise ImageError(f"{board.name} has no {ROMFS_SPARE_PARTITION} partition: it cannot "
                             "take application updates")
        room = max(rooms)
        if len(image) > room:
            raise ImageError(f"the image ({len(image):,} bytes) does not fit {board.name}'s "
                             f"{ROMFS_PARTITION} partitions ({room:,} bytes)")
