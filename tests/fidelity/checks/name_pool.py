# Imports each firmware module in turn and interns its names, on the device under MicroPython
# (tests/fidelity/test_name_pool.py): the qstr pools' figures before the first import and
# after the last. After each import the app's modules are let go again (app.unload), as the
# firmware lets go of those it loads for a moment: names stay interned once made, so the count
# is that of every module, while the heap holds one module's imports at a time.
import gc
import sys

import micropython
from app import unload


def _drop():
    for name in [n for n in sys.modules if n.startswith("app.")]:
        unload(name[len("app."):])
    gc.collect()


class _Sink:
    pass


def import_each(names):
    # The modules' own dotted names first, as `import app.x` in a script interns them when it
    # is compiled: counted before, so only what the modules intern counts.
    for name in names:
        getattr(_Sink, name, None)
    micropython.qstr_info()
    for name in names:
        __import__(name)
        _drop()
    micropython.qstr_info()
