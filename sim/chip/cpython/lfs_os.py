"""The firmware's `os` and `open` under CPython: the littlefs partition of the flash image.

Built on littlefs-python over the same block device the MicroPython side uses, with the same
geometry, so either interpreter mounts what the other wrote. Errors come out as OSError with
the errno MicroPython's VfsLfs2 would give.
"""

from __future__ import annotations

import errno as _errno
import io

import littlefs

import _simcore
import _simflash

LFS_READ_SIZE = 32
LFS_PROG_SIZE = 32
LFS_LOOKAHEAD = 32
LFS_CACHE = 128  # MicroPython: min(block size, 4 * max(read, prog))
LFS_BLOCK_CYCLES = 100  # as MicroPython's VfsLfs2 configures littlefs
_LFS_ERR_IO = -5
_S_IFDIR = 0x4000
_S_IFREG = 0x8000
sep = "/"


class FlashContext(littlefs.UserContext):
    """littlefs-python's block device callbacks over a FlashPartition.

    littlefs-python ignores exceptions raised in callbacks, so a power cut is turned into an
    I/O error here and re-raised at the next call from the firmware (see _checked).
    """

    def __init__(self, part: _simflash.FlashPartition) -> None:
        self.part = part
        self.buffer = bytearray()  # unused: the image file is the storage

    def read(self, cfg, block, off, size):
        buf = bytearray(size)
        try:
            self.part.readblocks(block, buf, off)
        except _simcore.PowerCut:
            return bytearray(b"\xff" * size)
        return buf

    def prog(self, cfg, block, off, data):
        try:
            self.part.writeblocks(block, data, off)
        except _simcore.PowerCut:
            return _LFS_ERR_IO
        return 0

    def erase(self, cfg, block):
        try:
            self.part.erase(block)
        except _simcore.PowerCut:
            return _LFS_ERR_IO
        return 0

    def sync(self, cfg):
        if not _simflash.dead:
            _simflash.image().flush()
        return 0


_fs: littlefs.LittleFS | None = None
_cwd = "/"


def mount(part: _simflash.FlashPartition) -> None:
    global _fs
    kwargs = dict(
        block_size=_simflash.BLOCK_SIZE, block_count=part.block_count, read_size=LFS_READ_SIZE,
        prog_size=LFS_PROG_SIZE, lookahead_size=LFS_LOOKAHEAD, cache_size=LFS_CACHE,
        block_cycles=LFS_BLOCK_CYCLES,
    )
    fs = littlefs.LittleFS(context=FlashContext(part), mount=False, **kwargs)
    try:
        fs.mount()
    except littlefs.LittleFSError:
        _check_dead()
        fs.format()
        fs.mount()
    _check_dead()
    _fs = fs


def _check_dead() -> None:
    if _simflash.dead:
        raise _simcore.PowerCut()


def _abspath(path: str) -> str:
    if not path.startswith("/"):
        path = _cwd.rstrip("/") + "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


def _errno_of(e: Exception) -> int:
    # littlefs-python raises LittleFSError (negative littlefs codes, which are errno values)
    # or, from open(), FileNotFoundError and friends without an errno.
    if isinstance(e, littlefs.LittleFSError):
        return -e.code
    cause = e.__cause__
    if isinstance(cause, littlefs.LittleFSError):
        return -cause.code
    return _errno.EIO


def _checked(fn, *args, **kwargs):
    _check_dead()
    try:
        result = fn(*args, **kwargs)
    except (littlefs.LittleFSError, OSError) as e:
        _check_dead()
        code = _errno_of(e)
        raise OSError(code, _errno.errorcode.get(code, "EIO")) from None
    _check_dead()
    return result


def listdir(path: str = ".") -> list[str]:
    return _checked(_fs.listdir, _abspath(path))


def ilistdir(path: str = "."):
    base = _abspath(path)
    for entry in _checked(lambda p: list(_fs.scandir(p)), base):
        kind = _S_IFDIR if entry.type == littlefs.LFSStat.TYPE_DIR else _S_IFREG
        yield (entry.name, kind, 0, entry.size)


def stat(path: str):
    st = _checked(_fs.stat, _abspath(path))
    kind = _S_IFDIR if st.type == littlefs.LFSStat.TYPE_DIR else _S_IFREG
    return (kind, 0, 0, 0, 0, 0, st.size, 0, 0, 0)


def statvfs(path: str = "/"):
    used = _checked(lambda: _fs.used_block_count)  # a property: reading it walks the fs
    total = _fs.block_count
    free = total - used
    return (_simflash.BLOCK_SIZE, _simflash.BLOCK_SIZE, total, free, free, 0, 0, 0, 0, 255)


def mkdir(path: str) -> None:
    _checked(_fs.mkdir, _abspath(path))


def rmdir(path: str) -> None:
    _checked(_fs.rmdir, _abspath(path))


def remove(path: str) -> None:
    _checked(_fs.remove, _abspath(path))


unlink = remove


def rename(old: str, new: str) -> None:
    _checked(_fs.rename, _abspath(old), _abspath(new))


def getcwd() -> str:
    return _cwd


def chdir(path: str) -> None:
    global _cwd
    target = _abspath(path)
    if stat(target)[0] != _S_IFDIR:
        raise OSError(20, "not a directory")
    _cwd = target


def sync() -> None:
    _check_dead()


def urandom(n: int) -> bytes:
    return _simcore.rng.bytes(n)


def uname():
    return ("esp32", "esp32", "1.28.0", "v1.28.0", "ESP32 module (virtual) with ESP32")


def dupterm(stream=None, index=0):
    return None


# Every file the firmware has open. A power cut leaves some half-closed in littlefs; held here,
# they are never finalised (the boot's process ends without finalisers: see boot.py), which
# would close them a second time in the C library and abort the process.
_open_files: set = set()


class _File:
    """A littlefs file as the firmware sees it: every call checks for a power cut."""

    def __init__(self, handle) -> None:
        self._h = handle
        _open_files.add(handle)

    def close(self):
        _checked(self._h.close)
        _open_files.discard(self._h)

    def __getattr__(self, name):
        attr = getattr(self._h, name)
        if not callable(attr):
            return attr

        return lambda *args, **kwargs: _checked(attr, *args, **kwargs)

    def write(self, data):
        # MicroPython writes a str to a binary file as its UTF-8 bytes (json.dump does so).
        if isinstance(data, str) and not isinstance(self._h, io.TextIOBase):
            data = data.encode()
        return _checked(self._h.write, data)

    def flush(self):
        # MicroPython's flush on a littlefs file is lfs_file_sync: the data reaches flash.
        # Python's buffered layers stop short of the raw file, so sync it here.
        def sync():
            self._h.flush()
            raw = getattr(getattr(self._h, "buffer", self._h), "raw", None)
            if raw is not None:
                raw.flush()

        _checked(sync)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        return iter(self.readline, self._h.read(0))


def _open_append(path: str, mode: str, encoding):
    # littlefs-python opens "a" without LFS_O_CREAT, so appending to a new file fails; MicroPython
    # creates it in the same open. Open with littlefs's own flags instead.
    flags = littlefs.lfs.LFSFileFlag
    access = flags.rdwr if "+" in mode else flags.wronly
    handle = littlefs.lfs.file_open(_fs.fs, path, access | flags.creat | flags.append)
    raw = littlefs.FileHandle(_fs.fs, handle)
    buffered = io.BufferedRandom(raw, LFS_CACHE) if "+" in mode else io.BufferedWriter(
        raw, LFS_CACHE)
    if "b" in mode:
        return buffered
    return io.TextIOWrapper(buffered, encoding=encoding or "utf-8")


def open(path: str, mode: str = "r", buffering: int = -1, encoding=None, *args, **kwargs):
    target = _abspath(path)
    if "a" in mode:
        handle = _checked(lambda: _open_append(target, mode, encoding))
    else:
        handle = _checked(lambda: _fs.open(target, mode, buffering=buffering,
                                           encoding=encoding))
    return _File(handle)


def exists(path: str) -> bool:
    try:
        stat(path)
    except OSError:
        return False
    return True
