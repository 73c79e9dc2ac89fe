# The firmware's `os` on the virtual device under MicroPython: the built-in module (its
# filesystem calls already reach the littlefs partition), with urandom drawn from the run's
# seed so that a run can be repeated exactly.
import _simcore

_b = _simcore._bos
for _name in dir(_b):
    if not _name.startswith("__"):
        globals()[_name] = getattr(_b, _name)


def urandom(n):
    return _simcore.rng.bytes(n)
