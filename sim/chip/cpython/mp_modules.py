"""MicroPython-only modules for firmware running under CPython: micropython, gc, sys, tls,
deflate."""

from __future__ import annotations

import errno as _errno
import gc as _gc
import importlib.util
import os as _os
import sys as _sys
import traceback
import types

import _simcore
import mp_tls

_PLAIN = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "plain")


def _load_plain(name: str) -> types.ModuleType:
    # A stand-in shared with plain CPython runs of the firmware (plain/<name>.py).
    spec = importlib.util.spec_from_file_location(name, _os.path.join(_PLAIN, name + ".py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def _make_micropython() -> types.ModuleType:
    # The one stand-in (plain/micropython.py), with `schedule` on the virtual clock.
    m = _load_plain("micropython")

    def schedule(func, arg):
        _simcore.at(_simcore.now_us, lambda: func(arg))

    m.schedule = schedule
    return m


def _make_gc(heap_bytes: int) -> types.ModuleType:
    # CPython has no fixed heap; the figures describe the heap the device would have, and a
    # collection only sweeps the youngest generation so that frequent calls stay cheap.
    m = types.ModuleType("gc")
    m.collect = lambda: _gc.collect(0)
    m.mem_free = lambda: heap_bytes
    m.mem_alloc = lambda: 0
    m.enable = _gc.enable
    m.disable = _gc.disable
    m.isenabled = _gc.isenabled
    m.threshold = lambda amount=None: -1 if amount is None else None
    return m


_SIM_DIR = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))


def format_exception(exc: BaseException) -> str:
    """A traceback as MicroPython prints it, so tools that read the text (mpremote turns
    "OSError: [Errno 2] ENOENT" into its own error) read the same under both interpreters.
    Frames inside the simulator are left out: on a device they are C code."""
    lines = ["Traceback (most recent call last):"]
    for frame in traceback.extract_tb(exc.__traceback__):
        if _os.path.abspath(frame.filename).startswith(_SIM_DIR):
            continue
        lines.append('  File "{}", line {}, in {}'.format(frame.filename, frame.lineno,
                                                          frame.name))
    name = type(exc).__name__
    if isinstance(exc, OSError):
        name = "OSError"
        if exc.errno is not None:
            message = "[Errno {}] {}".format(exc.errno, _errno.errorcode.get(exc.errno, ""))
        else:
            message = str(exc)
    else:
        message = str(exc)
    lines.append("{}: {}".format(name, message) if message else name)
    return "\n".join(lines) + "\n"


class _SysProxy(types.ModuleType):
    """The real sys, plus the functions MicroPython's sys has and CPython's lacks."""

    def __getattr__(self, name):
        return getattr(_sys, name)

    @staticmethod
    def print_exception(exc, file=None):
        (file or _sys.stdout).write(format_exception(exc))


def make_modules(heap_bytes: int) -> dict[str, types.ModuleType]:
    return {
        "micropython": _make_micropython(),
        "gc": _make_gc(heap_bytes),
        "sys": _SysProxy("sys"),
        "tls": mp_tls,
        "deflate": _load_plain("deflate"),
    }
