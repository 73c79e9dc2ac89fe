"""Entry point of a virtual device under CPython.

    python boot.py <settings.json>

The firmware runs unchanged: its imports of machine, esp32, network, time, select, os,
asyncio, micropython, gc, tls and deflate resolve to the sim's shims, its `open` to the littlefs
partition of the flash image, and its own modules load from that partition. Nothing else in the
process sees these substitutions: they live in the builtins of the firmware's modules only.
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

_SEARCH_PATH = ("/", "/lib")


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
    """`__import__` for firmware code: shims first, then the device filesystem, then CPython."""

    def __init__(self, shims: dict[str, types.ModuleType]) -> None:
        self.shims = shims
        self.modules: dict[str, types.ModuleType] = {}
        self.builtins = dict(vars(builtins))
        self.builtins["__import__"] = self.import_
        self.builtins["open"] = lfs_os.open

    def _locate(self, name: str) -> tuple[str, bool] | None:
        rel = name.replace(".", "/")
        for base in _SEARCH_PATH:
            package = base.rstrip("/") + "/" + rel + "/__init__.py"
            if lfs_os.exists(package):
                return package, True
            module = base.rstrip("/") + "/" + rel + ".py"
            if lfs_os.exists(module):
                return module, False
        return None

    def _load(self, name: str) -> types.ModuleType | None:
        if name in self.modules:
            return self.modules[name]
        found = self._locate(name)
        if found is None:
            return None
        path, is_package = found
        with lfs_os.open(path) as f:
            source = f.read()
        module = types.ModuleType(name)
        module.__file__ = path
        module.__dict__["__builtins__"] = self.builtins
        if is_package:
            module.__path__ = [path.rsplit("/", 1)[0]]
            module.__package__ = name
        else:
            module.__package__ = name.rpartition(".")[0]
        self.modules[name] = module
        try:
            exec(compile(source, path, "exec"), module.__dict__)
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


def main() -> None:
    settings = _simcore.load_settings(sys.argv[1])
    sys.path.extend(settings.get("sim_path", []))
    _simcore.console_attached = settings.get("console", False)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True,
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
    importer = FirmwareImporter(shims)
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
