"""The application runs from the ROMFS partition under both interpreters.

MicroPython mounts the romfs partition's image at /rom (vfs.VfsRom) at every boot and imports
along ["", ".frozen", "/rom", "/rom/lib", "/lib"], "" being the filesystem's root. Under CPython
the virtual device reads the same partition at every boot (sim/chip/cpython/romfs.py) and
imports in the same order. So rewriting the partition, as an update does, changes what either
interpreter runs at the next boot, and a module put on the filesystem is found, or shadows
one, the same way under both.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from checksuite import call, modules, tool
from mpremote.romfs import VfsRomWriter

from musket import firmware
from musket.boards import ROMFS_PARTITION, list_boards, load_board
from musket_sim import VirtualDevice
from musket_sim.chip.cpython import romfs
from musket_sim.device import INTERPRETERS

BOARD = "esp32-sim7080g"
STEPS = Path(__file__).parent / "checks" / "import_steps.py"  # what the device runs


@pytest.fixture(scope="module")
def cpython_image(tmp_path_factory) -> tuple[bytes, dict[str, bytes]]:
    files = firmware.romfs_files("cpython", tmp_path_factory.mktemp("mpy-cache"))
    return firmware.romfs_image(files), files


def test_the_reader_reads_the_firmware_image_as_it_was_packed(cpython_image):
    image, files = cpython_image
    read = romfs.Image(image + b"\xff" * 100)  # as the partition holds it, padded
    assert read.files == files
    assert {"app", "app/modem", "app/ota"} <= read.dirs
    assert read.kind("app/main.py") == "file" and read.kind("app") == "dir"
    assert read.kind("main.py") is None  # boot.py and main.py stay on the filesystem


@pytest.mark.parametrize("board", list_boards())
def test_the_cpython_application_fits_the_romfs_partition(cpython_image, board):
    """Sources take more room than bytecode; a board whose partition they outgrow cannot run
    its application under CPython (musket.firmware.build_romfs would refuse the image)."""
    image, _ = cpython_image
    spec = load_board(board)
    for ota in (False, True):
        if ROMFS_PARTITION not in [p.name for p in spec.partitions(ota)]:
            continue  # the application goes on littlefs
        room = spec.partition(ROMFS_PARTITION, ota).size
        assert len(image) <= room, (
            f"the CPython application's ROMFS image is {len(image):,} bytes, {board}'s romfs "
            f"partition {room:,}")


def test_the_reader_agrees_with_micropythons_vfsrom(cpython_image, tmp_path):
    """The real VfsRom lists the same files with the same bytes."""
    image, _ = cpython_image
    (tmp_path / "rom.img").write_bytes(image)
    program = (
        "import vfs, os, hashlib, binascii\n"
        "vfs.mount(vfs.VfsRom(open('rom.img', 'rb').read()), '/rom')\n"
        "def walk(d, rel):\n"
        "    for name, kind, _, _ in os.ilistdir(d):\n"
        "        if kind & 0x4000:\n"
        "            walk(d + '/' + name, rel + name + '/')\n"
        "        else:\n"
        "            data = open(d + '/' + name, 'rb').read()\n"
        "            print(rel + name, binascii.hexlify(hashlib.sha256(data).digest()).decode())\n"
        "walk('/rom', '')\n"
    )
    out = subprocess.run([str(tool("micropython")), "-c", program], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    seen = dict(line.split() for line in out.splitlines())
    assert seen == {path: hashlib.sha256(data).hexdigest()
                    for path, data in romfs.Image(image).files.items()}


def test_the_reader_follows_data_pointers_and_skips_padding():
    writer = VfsRomWriter()
    offset = writer.mkdata(b"shared bytes")
    writer.opendir("d")
    writer.mkfile("pointed", (len(b"shared bytes"), offset))  # (length, offset), as VfsRom
    writer.opendir("empty")
    writer.closedir()
    writer.closedir()
    writer.mkfile("plain", b"verbatim")
    image = writer.finalise()
    read = romfs.Image(image)
    assert read.files == {"d/pointed": b"shared bytes", "plain": b"verbatim"}
    assert read.dirs == {"d", "d/empty"}


def _record(kind: int, payload: bytes) -> bytes:
    return bytes([kind, len(payload)]) + payload  # short records: one-byte varints


def test_the_reader_skips_padding_and_stops_at_damage():
    file = _record(5, b"\x01a" + _record(1, b"\0\0") + _record(2, b"x"))
    body = _record(1, b"\0") + file + _record(0, b"") + _record(5, b"\x01b" + _record(2, b"y"))
    image = romfs.MAGIC + bytes([len(body)]) + body
    # Kind 0 marks damage: VfsRom finds nothing after it.
    assert romfs.Image(image).files == {"a": b"x"}


def test_a_damaged_image_is_no_image():
    image = firmware.romfs_image({"app/__init__.py": b"", "app/main.py": b"x = 1\n"})
    with pytest.raises(romfs.RomfsError):
        romfs.Image(image[:-3])  # shorter than its header says
    with pytest.raises(romfs.RomfsError):
        romfs.Image(b"\xff" * 64)  # an erased partition


def _write_application(device: VirtualDevice, tree: dict[str, str], tmp_path: Path) -> None:
    """Rewrites the device's romfs partition with the application `tree` (device path →
    source), packed for its interpreter as `musket build` and updates pack it."""
    root = tmp_path / "tree"
    for path, source in tree.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(source)
    files = firmware.romfs_files(device.interpreter, tmp_path / "mpy-cache", root)
    part = device.flash.romfs_partition()
    with open(device.image, "r+b") as f:
        f.seek(part.offset)
        f.write(firmware.build_romfs(files, part.size))


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_the_application_runs_from_the_romfs_partition(tmp_path, interpreter):
    device = VirtualDevice(BOARD, tmp_path / "dev", interpreter=interpreter)
    device.create_flash(modules(interpreter, [STEPS], tmp_path / "mpy-cache"))
    on_filesystem = device.read_files()
    assert {"boot.py", "main.py", "board.json"} <= on_filesystem.keys()
    assert not [path for path in on_filesystem if path.startswith("app/")], on_filesystem

    result = device.run(5, script="import app.main\nprint('FILE', app.main.__file__)\n")
    assert result.errors == [], result.errors
    assert result.script_output.split()[-1].startswith("/rom/app/main."), result.script_output

    # A new application in the partition is what the next boot runs.
    # (Source is UTF-8 whatever its first lines look like to CPython's coding declarations.)
    _write_application(device, {"app/__init__.py": "",
                                "app/version.py": "# encoding: CBOR\nWHERE = 'v2'\n"},
                       tmp_path)
    result = device.run(5, script=call("import_steps.report", "app.version", "app.main"))
    assert result.errors == [], result.errors
    assert "FOUND v2 -" in result.script_output, result.script_output


# Files put on the filesystem beside the firmware → where `app`, `app.main` and `extra` are
# found (see checks/import_steps.py), the same under both interpreters.
LAYOUTS = {
    "nothing": ({}, "rom rom -"),
    # The filesystem's root comes before /rom: a module there shadows the whole package.
    "module at the root": ({"app.py": "WHERE = 'root'\n"}, "root - -"),
    # ... and so does a folder, as a package without __init__.py; its submodules are its own.
    "folder at the root": ({"app/extra.py": "WHERE = 'root'\n"}, "folder - -"),
    # /lib comes after /rom.
    "module in /lib": ({"lib/app.py": "WHERE = 'lib'\n", "lib/extra.py": "WHERE = 'lib'\n"},
                       "rom rom lib"),
}


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_module_on_the_filesystem_is_found_as_micropython_finds_it(tmp_path, interpreter,
                                                                     layout):
    extra, expected = LAYOUTS[layout]
    files = modules(interpreter, [STEPS], tmp_path / "mpy-cache")
    files.update({path: source.encode() for path, source in extra.items()})
    device = VirtualDevice(BOARD, tmp_path / "dev", interpreter=interpreter)
    device.create_flash(files)
    result = device.run(5, script=call("import_steps.report", "app", "app.main", "extra"))
    found = [line for line in result.script_output.splitlines() if line.startswith("FOUND")]
    assert found == ["FOUND " + expected], result.script_output + "\n".join(result.errors)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
