# Entry point of a virtual device under the MicroPython unix port.
#   micropython -X heapsize=64K _simboot_mp.py <settings.json>
# Imports every shim while the host filesystem is still visible, swaps the root filesystem for
# the littlefs partition of the flash image (VfsLfs2, as the ESP32 port mounts it), then hands
# over to the runner.
import sys
import gc
import _simcore
import _simworld  # noqa: F401 - imported before the host filesystem goes away
import _simrun
import time  # noqa: F401
import select  # noqa: F401
import machine  # noqa: F401
import esp32  # noqa: F401
import network  # noqa: F401
import asyncio  # noqa: F401
import json  # noqa: F401
import vfs
import os

# Same littlefs geometry as the ESP32 port uses and as musket_sim writes images with.
_LFS_READ_SIZE = 32
_LFS_PROG_SIZE = 32
_LFS_LOOKAHEAD = 32


def _reserve_firmware_heap(heap_bytes):
    # The interpreter runs with extra heap for the sim's own modules. Once they are loaded,
    # ballast takes everything beyond the firmware's share, so the firmware meets the heap
    # limit it would meet on the board.
    global _ballast
    gc.collect()
    _simcore.sim_heap = gc.mem_alloc()
    free = gc.mem_free()
    if heap_bytes and free > heap_bytes:
        _ballast = bytearray(free - heap_bytes)
    gc.collect()
    _simcore.heap_baseline = gc.mem_alloc()


_ballast = None


def _run_source(source, filename, g, mode):
    exec(compile(source, filename, mode), g)


def _file_exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _print_exception(exc):
    sys.print_exception(exc, sys.stdout)


def main():
    settings = _simcore.load_settings(sys.argv[1])
    _simcore.console_attached = settings.get("console", False)
    script_source = None
    if settings.get("script"):
        with open(settings["script"]) as f:
            script_source = f.read()
    _simcore.install_models()
    for name in settings.get("preload", []):
        __import__(name)
    fs_entry = _simcore.find_partition("vfs")
    bdev = _simcore.FlashPartition(fs_entry["offset"], fs_entry["size"])
    try:
        fs = vfs.VfsLfs2(bdev, readsize=_LFS_READ_SIZE, progsize=_LFS_PROG_SIZE,
                         lookahead=_LFS_LOOKAHEAD)
    except OSError:
        # An unformatted partition is formatted on first boot, as the ESP32 port's
        # inisetup does.
        vfs.VfsLfs2.mkfs(bdev, readsize=_LFS_READ_SIZE, progsize=_LFS_PROG_SIZE,
                         lookahead=_LFS_LOOKAHEAD)
        fs = vfs.VfsLfs2(bdev, readsize=_LFS_READ_SIZE, progsize=_LFS_PROG_SIZE,
                         lookahead=_LFS_LOOKAHEAD)
    vfs.umount("/")
    vfs.mount(fs, "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    _reserve_firmware_heap(settings.get("heap_bytes", 0))
    runner = _simrun.Runner(_run_source, _file_exists, _print_exception)
    runner.boot(script_source)


try:
    main()
except _simcore.SimExit as e:
    _simcore.report("exit", reason=e.reason, detail=e.detail, heap_peak=_simcore.heap_peak,
                    flash_writes=_simcore.flash_writes)
