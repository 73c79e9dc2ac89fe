"""littlefs images of a device's filesystem partition, in the geometry the ESP32 port's
VfsLfs2 mounts (and the simulator uses under both interpreters)."""

from __future__ import annotations

import littlefs

BLOCK_SIZE = 4096
READ_SIZE = 32
PROG_SIZE = 32
LOOKAHEAD = 32
CACHE_SIZE = 128
BLOCK_CYCLES = 100


def _geometry(size: int) -> dict:
    return dict(block_size=BLOCK_SIZE, block_count=size // BLOCK_SIZE, read_size=READ_SIZE,
                prog_size=PROG_SIZE, lookahead_size=LOOKAHEAD, cache_size=CACHE_SIZE,
                block_cycles=BLOCK_CYCLES)


def build(files: dict[str, bytes], size: int) -> bytes:
    """A formatted littlefs image of `size` bytes holding `files` (device path → content)."""
    fs = littlefs.LittleFS(**_geometry(size))
    for path in sorted(files):
        parent = path.rpartition("/")[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as f:
            f.write(files[path])
    return bytes(fs.context.buffer)


def read(image: bytes) -> dict[str, bytes]:
    """Every file in a littlefs image, by device path."""
    fs = littlefs.LittleFS(context=littlefs.UserContext(buffer=bytearray(image)), mount=False,
                           **_geometry(len(image)))
    fs.mount()
    out = {}
    for root, _dirs, names in fs.walk("/"):
        for name in names:
            path = (root.rstrip("/") + "/" + name).lstrip("/")
            with fs.open(path, "rb") as f:
                out[path] = f.read()
    return out
