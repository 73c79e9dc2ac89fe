"""The flash image of a virtual board: one file laid out by the board's partition table.

What `musket build` and esptool would leave on a chip: stand-ins for the bootloader and the
MicroPython app image (what the ROM and the bootloader check), the partition table, the
firmware in the ROMFS partition where the board has one, and the littlefs filesystem with the
rest, /board.json and any extra files. The virtual device boots from it and writes to it.
"""

from __future__ import annotations

import json
from pathlib import Path

from musket import firmware, fsimage, parttable
from musket.boards import ROMFS_PARTITION, Board
from musket_sim import bootrom
from musket_sim.chip.cpython import romfs
from musket_sim.esp_formats import BOOTLOADER_OFFSETS, stand_in_image


class FlashImage:
    def __init__(self, board: Board, ota: bool, path: Path) -> None:
        self.board = board
        self.ota = ota
        self.path = path

    @property
    def partitions(self) -> list[dict]:
        return [
            {"name": p.name, "type": p.type, "subtype": p.subtype, "offset": p.offset,
             "size": p.size}
            for p in self.board.partitions(self.ota)
        ]

    def create(self, interpreter: str, running_app: str, files: dict[str, bytes] | None,
               with_firmware: bool) -> None:
        """A fresh image: erased everywhere, with the firmware packed for this interpreter (its
        application modules in the ROMFS partition where the board has one, boot.py and
        main.py on the filesystem), /board.json and any extra `files` on the littlefs
        filesystem."""
        fs_part = self.board.filesystem(self.ota)
        rom_part = self.romfs_partition()
        content: dict[str, bytes] = {}
        rom: dict[str, bytes] = {}
        if with_firmware:
            content.update(firmware.device_files(interpreter, firmware.default_cache_dir()))
            if rom_part is not None:
                content, rom = firmware.split_for_romfs(content, interpreter)
        content["board.json"] = json.dumps(self.board.to_device_dict(), indent=1).encode()
        content.update(files or {})
        image = bytearray(b"\xff" * self.board.flash_size)
        self._write_boot_chain(image, running_app)
        image[fs_part.offset:fs_part.offset + fs_part.size] = fsimage.build(content,
                                                                            fs_part.size)
        if rom:
            image[rom_part.offset:rom_part.end] = firmware.build_romfs(rom, rom_part.size)
        self.path.write_bytes(image)

    def _write_boot_chain(self, image: bytearray, running_app: str) -> None:
        """Stand-ins for what `musket build` puts below the filesystem: the bootloader, the
        board's partition table, and a MicroPython app image in the app slot the device
        boots (the virtual device runs the real firmware from the romfs/vfs partitions; the
        app image is what the bootloader checks)."""
        chip = self.board.chip
        boot, app = _stand_ins(chip, self.board.micropython_version)
        base = BOOTLOADER_OFFSETS[chip]
        image[base:base + len(boot)] = boot
        table = parttable.encode(self.board.partitions(self.ota))
        image[bootrom.PARTITION_TABLE_OFFSET:bootrom.PARTITION_TABLE_OFFSET + len(table)] = table
        slot = self.board.partition(running_app, self.ota)
        image[slot.offset:slot.offset + len(app)] = app

    def erase(self) -> None:
        """Flash as a new chip comes: erased everywhere (nothing to boot until flashed)."""
        self.path.write_bytes(b"\xff" * self.board.flash_size)

    def romfs_partition(self):
        names = [p.name for p in self.board.partitions(self.ota)]
        if ROMFS_PARTITION in names:
            return self.board.partition(ROMFS_PARTITION, self.ota)
        return None

    def romfs_image_size(self) -> int:
        """The length of the ROMFS image written to its partition; 0 if there is none."""
        rom_part = self.romfs_partition()
        if rom_part is None:
            return 0
        with open(self.path, "rb") as f:
            f.seek(rom_part.offset)
            return romfs.length(f.read(12))

    def read_files(self) -> dict[str, bytes]:
        """Every file on the filesystem partition, read from the image as it is now."""
        fs_part = self.board.filesystem(self.ota)
        with open(self.path, "rb") as f:
            f.seek(fs_part.offset)
            return fsimage.read(f.read(fs_part.size))


_STAND_INS: dict[tuple[str, str], tuple[bytes, bytes]] = {}


def _stand_ins(chip: str, micropython_version: str) -> tuple[bytes, bytes]:
    """(bootloader, MicroPython app) stand-in images for a fresh flash, made once."""
    key = (chip, micropython_version)
    if key not in _STAND_INS:
        _STAND_INS[key] = (
            stand_in_image(chip, "bootloader", "v5.4.1", bootloader=True),
            stand_in_image(chip, "micropython", "v%s.0" % micropython_version),
        )
    return _STAND_INS[key]
