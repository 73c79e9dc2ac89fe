# Where the device finds a module, for tests/sim/test_romfs.py: the same answer is expected
# from MicroPython and from CPython.
import sys


def _where(name):
    # "-" when there is no such module; else its WHERE (the test's own modules name where
    # they were put), "rom" for one from the ROMFS image, "folder" for a bare package folder.
    try:
        __import__(name)
    except ImportError:
        return "-"
    module = sys.modules[name]
    where = getattr(module, "WHERE", None)
    if where is not None:
        return where
    path = getattr(module, "__file__", None)
    if path is None:
        return "folder"
    return "rom" if path.startswith("/rom/") else path


def report(*names):
    print("FOUND", " ".join(_where(name) for name in names))
