"""`musket build`: the flash images for a board, from the firmware tree and a MicroPython
firmware binary the user supplies.

Output folder::

    bootloader.bin        second-stage bootloader, at the chip's bootloader offset
    partition-table.bin   the board's layout (plain or OTA), at 0x8000
    micropython.bin       the MicroPython app, at the first app partition
    romfs.bin             the application's compiled modules (VfsRom), at the romfs partition
    filesystem.bin        littlefs: boot.py, main.py, board.json (+ a device's config.json,
                          secrets.json, ca.pem: see DeviceData)
    flash.bin             all of the above merged by esptool, to be written at 0x0
    manifest.json         offsets, sizes, SHA-256 of each piece, board, firmware version
    devices/<name>/       per device (--device-config): its filesystem.bin and flash.bin

Pieces end at their last byte that is not erased flash (0xFF), rounded up to a 4 KiB sector,
so that writing them moves no padding over the serial link. Same inputs, same bytes: nothing
in the output depends on the time, the output folder or the order files are found in.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from musket import espimage, firmware, fsimage, parttable
from musket.boards import (
    FILESYSTEM_PARTITION,
    PARTITION_TABLE_OFFSET,
    ROMFS_PARTITION,
    SECTOR_SIZE,
    Board,
    load_board,
)
from musket.errors import BadInput

MANIFEST_FORMAT = 1
MANIFEST_NAME = "manifest.json"
MERGED_NAME = "flash.bin"
# Where the firmware reads a device's data (app/config.py, the uplink's broker settings).
CONFIG_PATH = "config.json"
SECRETS_PATH = "secrets.json"
CA_PATH = "ca.pem"
DEVICE_KEYS = ("config", "secrets", "ca_pem")
ERASED = 0xFF


class BuildError(BadInput):
    """The images cannot be built from the inputs given."""


@dataclass(frozen=True)
class Piece:
    """One region of flash the build writes."""

    name: str  # bootloader, partition-table, micropython, romfs, filesystem
    offset: int
    data: bytes
    partition: str | None = None  # the partition it fills, if any

    @property
    def file(self) -> str:
        return self.name + ".bin"

    def describe(self) -> dict:
        return {"name": self.name, "file": self.file, "offset": self.offset,
                "size": len(self.data), "sha256": hashlib.sha256(self.data).hexdigest(),
                "partition": self.partition}


@dataclass
class BuildResult:
    out_dir: Path
    board: str
    manifest: dict
    pieces: list[Piece] = field(default_factory=list)

    @property
    def merged(self) -> Path:
        return self.out_dir / MERGED_NAME


@dataclass(frozen=True)
class DeviceData:
    """What goes on one device's filesystem besides the application: its config (checked by
    the firmware's own schema), its secrets (MQTT user and password; never printed) and the
    broker's CA certificate."""

    name: str
    config: dict
    secrets: dict
    ca_pem: str = ""


def build(board: Board | str, micropython: Path | str, out_dir: Path | str, *,
          bootloader: Path | str | None = None, ota: bool = False,
          device: DeviceData | None = None, devices: list[DeviceData] | tuple = (),
          firmware_root: Path | None = None, cache_dir: Path | None = None,
          trusted_keys: dict[str, bytes] | None = None) -> BuildResult:
    """Builds every piece and the merged image into `out_dir`; returns the manifest.

    `device` goes on the shared filesystem image; each of `devices` gets its own filesystem
    and merged image under devices/<name>/. `trusted_keys`: the update keys' file
    (`KeyStore.device_file`), on every filesystem image, so units take the updates those keys
    sign.
    """
    board = load_board(board) if isinstance(board, str) else board
    out = Path(out_dir)
    parts = _firmware_parts(board, Path(micropython), bootloader)
    cache = Path(cache_dir) if cache_dir else firmware.default_cache_dir()
    fs_files, rom_files = application_files(board, cache, firmware_root)
    fs_files.update(trusted_keys or {})
    layout = board.partitions(ota)
    app_part = next(p for p in layout if p.type == "app")
    if len(parts.app) > app_part.size:
        raise BuildError(f"the MicroPython app ({len(parts.app):,} bytes) does not fit the "
                         f"{app_part.name!r} partition ({app_part.size:,} bytes)")
    rom_part = board.partition(ROMFS_PARTITION, ota)
    common = [
        Piece("bootloader", espimage.bootloader_offset(board.chip), parts.bootloader),
        Piece("partition-table", PARTITION_TABLE_OFFSET, parttable.encode(layout)),
        Piece("micropython", app_part.offset, parts.app, app_part.name),
        Piece("romfs", rom_part.offset,
              _trim(firmware.build_romfs(rom_files, rom_part.size)), rom_part.name),
    ]
    _check_bootloader_room(common[0])
    # Every device's data is checked before anything is written.
    pieces = [*common, _filesystem_piece(board, ota, fs_files, device)]
    per_device = [(one, _filesystem_piece(board, ota, fs_files, one))
                  for one in sorted(devices, key=lambda d: d.name)]
    out.mkdir(parents=True, exist_ok=True)
    merged = _write_set(out, pieces, board)
    device_entries = []
    for one, fs_piece in per_device:
        folder = out / "devices" / one.name
        folder.mkdir(parents=True, exist_ok=True)
        device_merged = _write_set(folder, [*common, fs_piece], board, only=[fs_piece])
        device_entries.append({"name": one.name, "filesystem": fs_piece.describe(),
                               "merged": device_merged})
    manifest = {
        "format": MANIFEST_FORMAT,
        "board": board.name,
        "chip": board.chip,
        "flash_size": board.flash_size,
        "layout": "ota" if ota else "plain",
        "firmware": _firmware_version(firmware_root),
        "micropython": {"file": Path(micropython).name, "kind": parts.kind,
                        "sha256": hashlib.sha256(Path(micropython).read_bytes()).hexdigest(),
                        "variant": board.micropython_variant,
                        "version": board.micropython_version},
        "partitions": [{"name": p.name, "type": p.type, "subtype": p.subtype,
                        "offset": p.offset, "size": p.size} for p in layout],
        "pieces": [piece.describe() for piece in pieces],
        "merged": merged,
        "devices": device_entries,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return BuildResult(out, board.name, manifest, pieces)


def application_files(board: Board, cache_dir: Path,
                      root: Path | None = None) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(filesystem files, ROMFS files) of the application for a MicroPython device: the
    compiled modules for the ROMFS partition; boot.py, main.py and /board.json for littlefs."""
    files = firmware.device_files("micropython", cache_dir, root)
    fs_files, rom_files = firmware.split_for_romfs(files, "micropython")
    fs_files["board.json"] = json.dumps(board.to_device_dict(), indent=1).encode()
    return fs_files, rom_files


def load_device(path: Path | str) -> DeviceData:
    """A device's data from a JSON file: {"config": {...}, "secrets": {...}, "ca_pem": "..."}
    (each optional); the file's stem names the device."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise BuildError(f"{path}: cannot read device config: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BuildError(f"{path.name}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BuildError(f"{path.name}: expected a JSON object with {' and '.join(DEVICE_KEYS)}")
    unknown = sorted(set(data) - set(DEVICE_KEYS))
    if unknown:
        raise BuildError(f"{path.name}: unknown key(s) {', '.join(unknown)} (expected: "
                         f"{', '.join(DEVICE_KEYS)})")
    for key in ("config", "secrets"):
        if not isinstance(data.get(key, {}), dict):
            raise BuildError(f"{path.name}: {key}: expected an object")
    if not isinstance(data.get("ca_pem", ""), str):
        raise BuildError(f"{path.name}: ca_pem: expected the PEM text as a string")
    return DeviceData(path.stem, data.get("config", {}), data.get("secrets", {}),
                      data.get("ca_pem", ""))


def load_devices(folder: Path | str) -> list[DeviceData]:
    """Every device in a folder of <name>.json files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BuildError(f"{folder}: not a folder of device config files")
    found = [load_device(path) for path in sorted(folder.glob("*.json"))]
    if not found:
        raise BuildError(f"{folder}: no .json device config files in it")
    return found


# --- pieces --------------------------------------------------------------------------------


def _firmware_parts(board: Board, micropython: Path,
                    bootloader: Path | str | None) -> espimage.FirmwareParts:
    data = _read_input(micropython, "MicroPython firmware")
    try:
        parts = espimage.split_firmware(data, board.chip, micropython.name)
    except espimage.ImageError as e:
        raise BuildError(f"{e} (give MicroPython's {board.micropython_variant} release .bin, "
                         f"or an app .bin with --bootloader)") from None
    if bootloader is not None:
        boot = _read_input(Path(bootloader), "bootloader")
        try:
            espimage.split_firmware(boot, board.chip, Path(bootloader).name)
        except espimage.ImageError as e:
            raise BuildError(str(e)) from None
        return espimage.FirmwareParts(parts.kind, boot, parts.app)
    if parts.bootloader is None:
        raise BuildError(
            f"{micropython.name} is an app image without a bootloader: give MicroPython's "
            f"release .bin for {board.micropython_variant} (bootloader, table and app in one), "
            f"or add --bootloader with the bootloader.bin of the same build")
    return parts


def _read_input(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BuildError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise BuildError(f"{what} {path}: cannot read: {e.strerror}") from None


def _check_bootloader_room(piece: Piece) -> None:
    if piece.offset + len(piece.data) > PARTITION_TABLE_OFFSET:
        raise BuildError(f"the bootloader ({len(piece.data):,} bytes at {piece.offset:#x}) "
                         f"runs into the partition table at {PARTITION_TABLE_OFFSET:#x}")


def _filesystem_piece(board: Board, ota: bool, fs_files: dict[str, bytes],
                      device: DeviceData | None) -> Piece:
    files = dict(fs_files)
    if device is not None:
        files.update(_device_records(device))
    part = board.filesystem(ota)
    return Piece("filesystem", part.offset, _trim(fsimage.build(files, part.size)),
                 FILESYSTEM_PARTITION)


# The firmware writes its own records: the config through app.config.save (which checks it
# against the firmware's schema), the secrets through app.store.write_json. Its modules run
# under this CPython with the sim's stand-in for MicroPython's `micropython` module.
_RECORD_WRITER = """
import json, os, sys
sys.path[:0] = sys.argv[1].split(os.pathsep)
from app import config, store
folder, data = sys.argv[2], json.load(sys.stdin)
try:
    if data["config"]:
        config.save(folder + "/{config}", data["config"])
    if data["secrets"]:
        store.write_json(folder + "/{secrets}", data["secrets"])
except config.ConfigError as e:
    sys.exit(str(e))
""".format(config=CONFIG_PATH, secrets=SECRETS_PATH)


def _device_records(device: DeviceData) -> dict[str, bytes]:
    records = {CA_PATH: device.ca_pem.encode()} if device.ca_pem else {}
    if not device.config and not device.secrets:
        return records
    from musket_sim.chip.cpython import plain

    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run(
            [sys.executable, "-c", _RECORD_WRITER, plain.pythonpath(firmware.firmware_dir()),
             folder],
            input=json.dumps({"config": device.config, "secrets": device.secrets}),
            capture_output=True, text=True)
        if result.returncode:
            raise BuildError(f"device {device.name}: config: {result.stderr.strip()}")
        records.update({name: Path(folder, name).read_bytes()
                        for name in sorted(os.listdir(folder))})
        return records


def _trim(image: bytes) -> bytes:
    """`image` without its trailing erased sectors."""
    end = len(image.rstrip(bytes([ERASED])))
    end = -(-end // SECTOR_SIZE) * SECTOR_SIZE
    return image[:max(end, SECTOR_SIZE)]


def _write_set(folder: Path, pieces: list[Piece], board: Board,
               only: list[Piece] | None = None) -> dict:
    """Writes the pieces (or `only` those) and the merged image into `folder`."""
    for piece in only if only is not None else pieces:
        (folder / piece.file).write_bytes(piece.data)
    merged = _merge(pieces, board)
    (folder / MERGED_NAME).write_bytes(merged)
    return {"file": MERGED_NAME, "offset": 0, "size": len(merged),
            "sha256": hashlib.sha256(merged).hexdigest()}


def _merge(pieces: list[Piece], board: Board) -> bytes:
    from esptool.cmds import merge_bin

    from musket.esplog import quiet

    with quiet():
        return merge_bin([(p.offset, p.data) for p in pieces], board.chip, output=None,
                         target_offset=0)


def _firmware_version(root: Path | None) -> dict:
    """git describe of the firmware tree, and a hash of its files (what actually decides the
    bytes, dirty tree or not)."""
    root = root or firmware.firmware_dir()
    digest = hashlib.sha256()
    for device_path, source in firmware.firmware_sources(root).items():
        digest.update(device_path.encode() + b"\0" + source.read_bytes() + b"\0")
    try:
        result = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"],
                                cwd=root, capture_output=True, text=True, timeout=10)
        describe = result.stdout.strip() if result.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        describe = None
    return {"describe": describe, "sha256": digest.hexdigest()}

