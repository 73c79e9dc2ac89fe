"""Power cuts and flash errors for the device-side checks (store, counter): a stand-in for
``os`` and ``open`` inside app.store that fails the n-th flash operation."""

import os


class PowerCut(Exception):
    """Raised in place of the flash operation the power did not survive."""


class Cutter:
    """Stands in for ``os`` and ``open`` inside app.store and fails the n-th flash operation
    (a create, a write, a rename, a remove) by raising ``fail``: PowerCut for a power cut,
    OSError for a flash error the firmware survives. A failed write leaves half its bytes."""

    def __init__(self, at, fail):
        self.at = at
        self.fail = fail
        self.ops = 0

    def tick(self):
        self.ops += 1
        if self.ops == self.at:
            raise self.fail(5)

    def stat(self, path):
        return os.stat(path)

    def rename(self, old, new):
        self.tick()
        os.rename(old, new)

    def remove(self, path):
        self.tick()
        os.remove(path)

    def open(self, path, mode="r"):
        if "r" not in mode:
            self.tick()
            return CutFile(self, open(path, mode))
        return open(path, mode)


class CutFile:
    def __init__(self, cutter, f):
        self.cutter = cutter
        self.f = f

    def write(self, data):
        try:
            self.cutter.tick()
        except Exception:
            self.f.write(data[:len(data) // 2])
            self.f.close()
            raise
        return self.f.write(data)

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
