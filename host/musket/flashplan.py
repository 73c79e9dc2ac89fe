"""A build folder as `musket flash` will write it: the manifest's plan (`Plan`), checked
whole before any port is opened, as the unit will read each piece. Every field of the
manifest with its type, each piece against its size and SHA-256, the bootloader and the apps
as ESP images (magic, segments, chip id, checksum, SHA-256) and the partition table by its
MD5. A bad build is a BadBuild (exit code 4), naming the file, the piece and what is wrong.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from musket import espimage, parttable
from musket.boards import FILESYSTEM_PARTITION, PARTITION_TABLE_OFFSET
from musket.build import MANIFEST_FORMAT, MANIFEST_NAME
from musket.errors import BadInput, MusketError

ERASED = b"\xff"
ZLIB_LEVEL = 9  # what esptool compresses with, so the bar's total matches its transfers
FILESYSTEM_PIECE = "filesystem"  # the piece build.py makes for the filesystem partition
NVS_PARTITION = "nvs"
OTADATA_PARTITION = "otadata"


class FlashError(MusketError):
    """Root of what `musket flash` raises or reports; a port's failure of no kind below."""


class BadBuild(FlashError, BadInput):
    """The build folder, its manifest or one of its pieces cannot be flashed. Found before any
    port is opened: nothing was written."""

    hint = "run `musket build` again to remake the folder"


@dataclass(frozen=True)
class Region:
    name: str
    offset: int
    data: bytes


@dataclass
class Plan:
    """What a build folder asks to be written, checked against its manifest."""

    folder: Path
    board: str
    chip: str
    layout: str
    pieces: list[Region]
    partitions: dict[str, dict]
    _wire_sizes: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, folder: Path | str) -> Plan:
        """The plan in a build folder, after checking all of it as the unit would: every
        field of the manifest with its type, each piece's file against its size and SHA-256,
        each ESP image (the bootloader and the apps) as the chip's bootloader checks it, the
        partition table's MD5 and its match with the manifest. Raises BadBuild, naming the
        file, the piece and what is wrong; opens no port."""
        folder = Path(folder)
        manifest = _read_manifest(folder)
        path = folder / MANIFEST_NAME
        partitions = {p["name"]: p for p in manifest["partitions"]}
        pieces = []
        for n, entry in enumerate(manifest["pieces"]):
            data = _read_piece(folder, entry, _piece_where(path, n, entry))
            _check_content(folder / entry["file"], entry, data, manifest["chip"], partitions)
            pieces.append(Region(entry["name"], entry["offset"], data))
        return cls(folder, manifest["board"], manifest["chip"], manifest["layout"], pieces,
                   partitions)

    def wire_size(self, region: Region) -> int:
        """Bytes `region` takes on the wire, compressed as esptool compresses it; computed
        once per region, however many ports are flashed."""
        key = (region.offset, len(region.data), region.name)
        with self._lock:
            if key not in self._wire_sizes:
                self._wire_sizes[key] = len(zlib.compress(region.data, ZLIB_LEVEL))
            return self._wire_sizes[key]

    def piece(self, name: str) -> Region:
        return next(p for p in self.pieces if p.name == name)

    def regions(self, *, filesystem: bool, erase_data: bool) -> list[Region]:
        """The regions to write: the pieces, the filesystem only if asked, and erased flash
        over what must be cleared."""
        out = [p for p in self.pieces if p.name != FILESYSTEM_PIECE]
        fs = self.piece(FILESYSTEM_PIECE)
        if erase_data:
            size = self.partitions[FILESYSTEM_PARTITION]["size"]
            whole = fs.data + ERASED * (size - len(fs.data))
            out.append(Region(FILESYSTEM_PIECE, fs.offset, whole))
            nvs = self.partitions[NVS_PARTITION]
            out.append(Region("nvs (erased)", nvs["offset"], ERASED * nvs["size"]))
        elif filesystem:
            out.append(fs)
        if OTADATA_PARTITION in self.partitions:
            ota = self.partitions[OTADATA_PARTITION]
            out.append(Region("otadata (erased)", ota["offset"], ERASED * ota["size"]))
        return sorted(out, key=lambda r: r.offset)


# --- the build folder ---------------------------------------------------------------------

# What Plan.load reads from a manifest (build.py writes it), with the JSON type of each: all
# of it is checked before any of it is used. Integers are never negative.
MANIFEST_FIELDS = {"format": int, "board": str, "chip": str, "layout": str, "pieces": list,
                   "partitions": list}
PIECE_FIELDS = {"name": str, "file": str, "offset": int, "size": int, "sha256": str,
                "partition": (str, type(None))}
PARTITION_FIELDS = {"name": str, "type": str, "offset": int, "size": int}
# What the plan cannot do without: the filesystem piece, and the partitions it writes or erases.
REQUIRED_PIECES = (FILESYSTEM_PIECE,)
REQUIRED_PARTITIONS = (FILESYSTEM_PARTITION, NVS_PARTITION)
_JSON_TYPES = {int: "an integer", str: "a string", list: "a list", dict: "an object",
               type(None): "null"}
_SHOWN_VALUE = 40  # characters of a wrong value quoted in an error


def _read_manifest(folder: Path) -> dict:
    """The manifest, every field the plan uses present and of its type, its pieces and
    partitions consistent with each other."""
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadBuild(f"{folder} is not a build folder (no {MANIFEST_NAME})",
                       hint="run `musket build` first") from None
    except OSError as e:
        raise BadBuild(f"{path}: cannot read: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadBuild(f"{path}: not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise BadBuild(f"{path}: {_json_type(manifest)}, expected an object")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise BadBuild(f"{path}: manifest format {manifest.get('format')!r}, expected "
                       f"{MANIFEST_FORMAT} (made by another musket?)")
    _check_fields(manifest, MANIFEST_FIELDS, str(path))
    for n, entry in enumerate(manifest["pieces"]):
        _check_fields(entry, PIECE_FIELDS, _piece_where(path, n, entry))
    for n, entry in enumerate(manifest["partitions"]):
        name = f" ({entry['name']})" if isinstance(entry, dict) and isinstance(
            entry.get("name"), str) else ""
        _check_fields(entry, PARTITION_FIELDS, f"{path}: partitions[{n}]{name}")
    try:
        espimage.bootloader_offset(manifest["chip"])
    except espimage.ImageError as e:
        raise BadBuild(f"{path}: chip: {e}") from None
    _check_names(path, "pieces", manifest["pieces"], REQUIRED_PIECES)
    _check_names(path, "partitions", manifest["partitions"], REQUIRED_PARTITIONS)
    partitions = {p["name"]: p for p in manifest["partitions"]}
    _check_places(path, manifest["pieces"], partitions)
    fs = next(p for p in manifest["pieces"] if p["name"] == FILESYSTEM_PIECE)
    vfs = partitions[FILESYSTEM_PARTITION]
    if (fs["partition"], fs["offset"]) != (FILESYSTEM_PARTITION, vfs["offset"]):
        raise BadBuild(f"{path}: the {FILESYSTEM_PIECE} piece does not start partition "
                       f"{FILESYSTEM_PARTITION!r} (at {vfs['offset']:#x})")
    return manifest


def _check_fields(entry, fields: dict, where: str) -> None:
    if not isinstance(entry, dict):
        raise BadBuild(f"{where}: {_json_type(entry)}, expected an object")
    for key, kinds in fields.items():
        if key not in entry:
            raise BadBuild(f"{where}: no {key}")
        value, kinds = entry[key], kinds if isinstance(kinds, tuple) else (kinds,)
        # JSON's true and false are not integers, though Python's bool is an int.
        if isinstance(value, bool) or not isinstance(value, kinds) or (
                isinstance(value, int) and value < 0):
            wanted = " or ".join(_JSON_TYPES[k] for k in kinds)
            if int in kinds:
                wanted = wanted.replace("an integer", "an integer, 0 or more")
            shown = json.dumps(value)
            if len(shown) > _SHOWN_VALUE:
                shown = shown[:_SHOWN_VALUE] + "..."
            raise BadBuild(f"{where}: {key} is {shown}, expected {wanted}")


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    return next((name for kind, name in _JSON_TYPES.items() if isinstance(value, kind)),
                "a number")


def _piece_where(path: Path, n: int, entry) -> str:
    """How an error names a piece: 'build/manifest.json: pieces[2] (micropython.bin)'."""
    label = ""
    if isinstance(entry, dict):
        label = next((f" ({entry[k]})" for k in ("file", "name")
                      if isinstance(entry.get(k), str)), "")
    return f"{path}: pieces[{n}]{label}"


def _check_names(path: Path, key: str, entries: list[dict], required: tuple[str, ...]) -> None:
    seen = set()
    for n, entry in enumerate(entries):
        if entry["name"] in seen:
            raise BadBuild(f"{path}: {key}[{n}]: name {entry['name']!r} is used twice")
        seen.add(entry["name"])
    for name in required:
        if name not in seen:
            raise BadBuild(f"{path}: {key}: none named {name!r}")


def _check_places(path: Path, pieces: list[dict], partitions: dict[str, dict]) -> None:
    """Each piece inside the partition it names, and no two pieces over the same flash."""
    for n, entry in enumerate(pieces):
        if entry["partition"] is None:
            continue
        part = partitions.get(entry["partition"])
        if part is None:
            raise BadBuild(f"{_piece_where(path, n, entry)}: partition {entry['partition']!r} "
                           f"is not in partitions")
        if not (part["offset"] <= entry["offset"]
                and entry["offset"] + entry["size"] <= part["offset"] + part["size"]):
            raise BadBuild(f"{_piece_where(path, n, entry)}: {entry['size']:,} bytes at "
                           f"{entry['offset']:#x} do not fit partition {part['name']!r} "
                           f"({part['size']:,} bytes at {part['offset']:#x})")
    placed = sorted(enumerate(pieces), key=lambda item: item[1]["offset"])
    for (_, before), (n, entry) in itertools.pairwise(placed):
        if before["offset"] + before["size"] > entry["offset"]:
            raise BadBuild(f"{_piece_where(path, n, entry)}: at {entry['offset']:#x}, inside "
                           f"{before['file']} ({before['size']:,} bytes at "
                           f"{before['offset']:#x})")


def _read_piece(folder: Path, entry: dict, where: str) -> bytes:
    """A piece's file, checked against the manifest's size and SHA-256."""
    name = entry["file"]
    if name in ("", ".", "..") or Path(name).name != name:
        raise BadBuild(f"{where}: file {name!r} is not a file name in the build folder")
    try:
        data = (folder / name).read_bytes()
    except FileNotFoundError:
        raise BadBuild(f"{folder}: {name} is missing") from None
    except OSError as e:
        raise BadBuild(f"{folder / name}: cannot read: {e.strerror}") from None
    if len(data) != entry["size"]:
        raise BadBuild(f"{folder}: {name} has {len(data):,} bytes, the manifest says "
                       f"{entry['size']:,} (changed after the build?)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"].lower():
        raise BadBuild(f"{folder}: {name} does not match the manifest (changed after the "
                       f"build?)")
    return data


def _check_content(path: Path, entry: dict, data: bytes, chip: str,
                   partitions: dict[str, dict]) -> None:
    """A piece checked as the unit will read it, by where it lands in flash: the ROM loads the
    second-stage bootloader from the chip's bootloader offset, the bootloader reads the
    partition table at 0x8000 and loads an app from the start of an app partition."""
    apps = {p["offset"]: p["name"] for p in partitions.values() if p["type"] == "app"}
    offset = entry["offset"]
    if offset == espimage.bootloader_offset(chip):
        role = "the bootloader"
    elif offset in apps:
        role = f"the app for partition {apps[offset]}"
    elif offset == PARTITION_TABLE_OFFSET:
        _check_table(path, data, partitions)
        return
    else:
        return
    try:
        espimage.image_length(data, chip, f"{path} ({role})")
    except espimage.ImageError as e:
        raise BadBuild(str(e)) from None


def _check_table(path: Path, data: bytes, partitions: dict[str, dict]) -> None:
    try:
        table = parttable.decode(data)
    except parttable.PartitionTableError as e:
        raise BadBuild(f"{path} (the partition table): {e}") from None
    found = {(p.name, p.type, p.offset, p.size) for p in table}
    listed = {(p["name"], p["type"], p["offset"], p["size"]) for p in partitions.values()}
    if found != listed:
        raise BadBuild(f"{path} (the partition table): its partitions are not the manifest's")
