"""Entry point of a virtual device under CPython.

    python boot.py <settings.json>

The firmware runs unchanged: its imports of machine, esp32, network, time, select, os,
asyncio, micropython, gc, tls and deflate resolve to the sim's shims, its `open` to the littlefs
partition of the flash image, and its own modules load as MicroPython loads them: from that
partition and from the ROMFS image in the romfs partition, read at every boot and found under
/rom. Nothing else in the process sees these substitutions: they live in the builtins of the
firmware's modules only.
"""

from __future__ import annotations

import builtins
import importlib.util
import io
import os as _host_os
import select  # noqa: F401 - imported while sys.path is intact, for _simcore
import sys
import time  # noqa: F401
import types

_HERE = _host_os.path.dirname(_host_os.path.abspath(__file__))
_SHIMS = _host_os.path.dirname(_HERE)  # the chip's modules, shared with MicroPython
sys.path.insert(0, _HERE)
sys.path.append(_SHIMS)  # after the standard library, so that `time` and `select` stay real

import _simcore  # noqa: E402
import _simflash  # noqa: E402
import _simrun  # noqa: E402
import lfs_os  # noqa: E402
import mp_asyncio  # noqa: E402
import mp_modules  # noqa: E402
import romfs  # noqa: E402

# Where modules are found, in MicroPython's order (sys.path in _simboot_mp.py, where "" is the
# working folder "/"; nothing is frozen): the ROMFS image is mounted at /rom when the board's
# romfs partition holds one.
_ROM = "/rom"
_SEARCH_PATH = ("/", "/lib")
_SEARCH_PATH_WITH_ROM = ("/", _ROM, _ROM + "/lib", "/lib")
_S_IFDIR = 0x4000


_U_NAMES = frozenset("u" + n for n in (
    "binascii", "collections", "errno", "hashlib", "heapq", "io", "json", "os", "random", "re",
    "select", "socket", "ssl", "struct", "sys", "time", "zlib", "asyncio"))


class _Stdout(io.TextIOWrapper):
    """The console's output as MicroPython's sys.stdout is: text, or bytes written as they
    are (ampy's `get` writes hexlify's bytes)."""

    def write(self, s):  # type: ignore[override]
        if isinstance(s, (bytes, bytearray, memoryview)):
            self.flush()
            return self.buffer.write(bytes(s))
        return super().write(s)


def _load_shim(name: str) -> types.ModuleType:
    # time.py and select.py share their names with CPython's modules, so they load by path.
    spec = importlib.util.spec_from_file_location("_shim_" + name,
                                                  _host_os.path.join(_SHIMS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _firmware_os() -> types.ModuleType:
    m = types.ModuleType("os")
    for name in ("listdir", "ilistdir", "stat", "statvfs", "mkdir", "rmdir", "remove",
                 "unlink", "rename", "getcwd", "chdir", "sync", "urandom", "uname", "dupterm",
                 "sep"):
        setattr(m, name, getattr(lfs_os, name))
    return m


class FirmwareImporter:
    """`__import__` for firmware code: shims first, then the device's files (the littlefs
    filesystem and the ROMFS image `rom`, if any), then CPython."""

    def __init__(self, shims: dict[str, types.ModuleType], rom: romfs.Image | None) -> None:
        self.shims = shims
        self.rom = rom
        self.search_path = _SEARCH_PATH if rom is None else _SEARCH_PATH_WITH_ROM
        self.modules: dict[str, types.ModuleType] = {}
        self.builtins = dict(vars(builtins))
        self.builtins["__import__"] = self.import_
        self.builtins["open"] = lfs_os.open

    def _in_rom(self, path: str) -> str | None:
        """`path` inside the ROMFS image if it is under /rom (the image covers what the
        filesystem has there, as a mount does), else None."""
        if self.rom is not None and path.startswith(_ROM + "/"):
            return path[len(_ROM) + 1:]
        return None

    def _kind(self, path: str) -> str | None:
        """"file", "dir" or None: what `path` is on the device."""
        in_rom = self._in_rom(path)
        if in_rom is not None:
            return self.rom.kind(in_rom)
        try:
            mode = lfs_os.stat(path)[0]
        except OSError:
            return None
        return "dir" if mode & _S_IFDIR else "file"

    def _source(self, path: str) -> str:
        # Text, as MicroPython reads source: UTF-8, whatever a comment in the first two lines
        # looks like to CPython's coding declarations ("# ... encoding: CBOR").
        in_rom = self._in_rom(path)
        if in_rom is not None:
            return self.rom.files[in_rom].decode()
        with lfs_os.open(path) as f:
            return f.read()

    def _locate(self, name: str) -> tuple[str, bool] | None:
        """(path, is_package) of module `name`, found as MicroPython finds it: a top-level
        name along the search path, a submodule in its package's folder only; a folder is a
        package, with or without an __init__.py."""
        parent, _, last = name.rpartition(".")
        if parent:
            bases = getattr(self.modules.get(parent), "__path__", ())
        else:
            bases = self.search_path
        for base in bases:
            path = base.rstrip("/") + "/" + last
            if self._kind(path) == "dir":
                return path, True
            if self._kind(path + ".py") == "file":
                return path + ".py", False
        return None

    def _load(self, name: str) -> types.ModuleType | None:
        if name in self.modules:
            return self.modules[name]
        found = self._locate(name)
        if found is None:
            return None
        path, is_package = found
        module = types.ModuleType(name)
        module.__dict__["__builtins__"] = self.builtins
        if is_package:
            module.__path__ = [path]
            module.__package__ = name
            path += "/__init__.py"
            if self._kind(path) != "file":
                path = None  # a namespace package: nothing to run
        else:
            module.__package__ = name.rpartition(".")[0]
        self.modules[name] = module
        if path is not None:
            module.__file__ = path
            try:
                exec(compile(self._source(path), path, "exec"), module.__dict__)
            except BaseException:
                del self.modules[name]
                raise
        if "." in name:
            parent, _, child = name.rpartition(".")
            setattr(self.modules[parent], child, module)
        return module

    def _load_chain(self, name: str) -> types.ModuleType | None:
        parts = name.split(".")
        module = None
        for i in range(1, len(parts) + 1):
            module = self._load(".".join(parts[:i]))
            if module is None:
                return None
        return module

    def import_(self, name, globals=None, locals=None, fromlist=(), level=0):
        if name in _U_NAMES:
            # MicroPython still answers to its modules' old names (ubinascii is binascii),
            # which tools such as ampy send to the raw REPL.
            name = name[1:]
        if level > 0:
            package = (globals or {}).get("__package__") or ""
            base = package.rsplit(".", level - 1)[0] if level > 1 else package
            name = base + ("." + name if name else "")
        top = name.partition(".")[0]
        if top in self.shims:
            return self.shims[top]
        if name in self.modules or self._locate(top) is not None:
            module = self._load_chain(name)
            if module is None:
                raise ImportError("no module named '{}'".format(name))
            if fromlist:
                for item in fromlist:
                    if not hasattr(module, item) and hasattr(module, "__path__"):
                        # `from package import sub` finds a loaded submodule that the package
                        # no longer has as an attribute (the firmware let it go with delattr
                        # and kept it in sys.modules): MicroPython takes it from sys.modules,
                        # CPython's IMPORT_FROM only from the host's, so it is put back.
                        sub = self._load(name + "." + item)
                        if sub is not None and not hasattr(module, item):
                            setattr(module, item, sub)
                return module
            return self.modules[top]
        return builtins.__import__(name, globals, locals, fromlist, 0)

    def run_source(self, source: str, filename: str, g: dict, mode: str) -> None:
        g["__builtins__"] = self.builtins
        exec(compile(source, filename, mode), g)


def _romfs() -> romfs.Image | None:
    """The ROMFS image in the romfs partition as it is at this boot, or None where there is
    none (no such partition, or no image in it), as _simboot_mp.py mounts it."""
    entry = _simflash.find_partition("romfs")
    if entry is None:
        return None
    f = _simflash.image()
    f.seek(entry["offset"])
    try:
        return romfs.Image(f.read(entry["size"]))
    except romfs.RomfsError:
        return None


def main() -> None:
    settings = _simcore.load_settings(sys.argv[1])
    sys.path.extend(settings.get("sim_path", []))
    _simcore.console_attached = settings.get("console", False)
    sys.stdout = _Stdout(io.FileIO(1, "w", closefd=False), write_through=True,
                         encoding="utf-8", errors="replace")
    script_source = None
    if settings.get("script"):
        with open(settings["script"]) as f:
            script_source = f.read()
    shims = {
        "time": _load_shim("time"),
        "select": _load_shim("select"),
        "machine": __import__("machine"),
        "esp32": __import__("esp32"),
        "network": __import__("network"),
        "asyncio": mp_asyncio,
        "os": _firmware_os(),
    }
    shims.update(mp_modules.make_modules(settings.get("heap_bytes", 0)))
    fs_entry = _simflash.find_partition("vfs")
    lfs_os.mount(_simflash.FlashPartition(fs_entry["offset"], fs_entry["size"]))
    importer = FirmwareImporter(shims, _romfs())
    # The firmware's sys.modules is its own module table, as on the device: popping a module
    # from it unloads it (the next import reads the file again), and lookups find app modules.
    shims["sys"].modules = importer.modules
    for name in settings.get("preload", []):
        importer.import_(name)

    def file_exists(path: str) -> bool:
        return lfs_os.exists(path)

    def print_exception(exc: BaseException) -> None:
        shims["sys"].print_exception(exc, sys.stdout)

    runner = _simrun.Runner(importer.run_source, file_exists, print_exception)
    # The runner opens boot.py and main.py through `open`: on the device that is the flash.
    _simrun.open = lfs_os.open
    runner.boot(script_source)


if __name__ == "__main__":
    try:
        main()
    except _simcore.SimExit as e:
        _simrun.report_exit(e.reason, e.detail)
    # The boot is over, as when the chip resets or loses power: nothing of the firmware runs
    # on, not even the finalisers of the files it had open (lfs_os._open_files). What it wrote
    # to flash is in the image file's buffer: that reaches the file.
    _simflash.image().flush()
    sys.stdout.flush()
    sys.stderr.flush()
    _host_os._exit(0)
