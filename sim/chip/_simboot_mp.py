# Entry point of a virtual device under the MicroPython unix port.
#   micropython -X heapsize=<firmware heap + sim reserve> _simboot_mp.py <settings.json> <heap>
# Imports every shim while the host filesystem is still visible, swaps the root filesystem for
# the littlefs partition of the flash image (VfsLfs2, as the ESP32 port mounts it), then hands
# over to the runner.
#
# The firmware's heap: the interpreter's heap also holds the sim's own modules. The firmware's
# share is claimed first, in one piece, before anything else is loaded; everything the sim
# leaves free afterwards is taken by ballast; then the firmware's piece is released. So the
# firmware meets the limit it would meet on the board, unfragmented by the sim.
import sys
import gc

_firmware_heap = bytearray(int(sys.argv[2])) if len(sys.argv) > 2 else None
# The romfs image (argv[3]: its length) likewise needs one contiguous piece.
_rom_image = bytearray(int(sys.argv[3])) if len(sys.argv) > 3 and sys.argv[3] != "0" else None

import _simcore
import _simflash
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


def _release_firmware_heap():
    global _firmware_heap
    gc.collect()
    # What the sim itself holds in the interpreter's heap, beside the firmware's share: its
    # modules, buffers and the pool of names grown ahead of the firmware's.
    held = gc.mem_alloc() - len(_firmware_heap) - (len(_rom_image) if _rom_image else 0)
    _simcore.sim_heap_bytes = held
    # The pieces go in a list made at full size first, which does not grow while the heap
    # runs out: so the ballast takes every last free block. A list, not a chain of pairs:
    # the collector marks a chain one link deeper per piece, and a chain of hundreds (the
    # small holes' pieces) overflows its mark stack, which makes every collection rescan the
    # whole heap over and over. Pieces beyond the list's slots (none in practice) share its
    # last slot as a chain.
    pieces = [None] * _BALLAST_SLOTS
    taken = 0
    piece = _BALLAST_PIECE
    while piece >= _BALLAST_MIN_PIECE:
        try:
            if taken < _BALLAST_SLOTS - 1:
                pieces[taken] = bytearray(piece)
                taken += 1
            else:
                pieces[taken] = (bytearray(piece), pieces[taken])
        except MemoryError:
            piece //= 2
    _simcore.sim_reserve = pieces
    _end_name_chunk()
    _firmware_heap = None
    gc.collect()
    _simcore.heap_baseline = gc.mem_alloc()


_BALLAST_PIECE = 64 * 1024
_BALLAST_MIN_PIECE = 16
_BALLAST_SLOTS = 1024

# Names (qstrs) live in pools that double in size as names are interned; the sim's names and
# the firmware's share them. Whether the firmware's next name lands in a free slot or makes a
# new pool of thousands of entries (over 14K in one piece) would otherwise depend on how many
# names the sim happens to use. So the pool is grown here, on the sim's side of the heap,
# until the newest pool has room for this many more names: the firmware never pays for pool
# growth, however many names the sim uses. (On the chip the firmware's names cost about 11
# bytes each in pools on the heap, which the chip's heap holds above the firmware's share.)
_FIRMWARE_NAMES = 1536
_BYTES_PER_POOL_ENTRY = 11  # hash, length and pointer of one name, on the 64-bit port
_PREGROW_BATCH = 32  # names interned between two readings of the heap


class _NameSink:
    pass


def _pregrow_name_pool():
    sink = _NameSink()
    # No collection while names are interned, so every rise in allocation is seen whole; the
    # names' own strings are garbage once interned, collected now and then between batches.
    # Allocation is read once a batch, not once a name: each reading walks the whole heap's
    # table, and a boot would spend more on them than on all else it does. A batch that made
    # a pool rose by the pool beside its names, which cost about what the batch before's did.
    gc.collect()
    gc.disable()
    serial = 0
    names_cost = None
    before = gc.mem_alloc()
    while True:
        for _ in range(_PREGROW_BATCH):
            # getattr interns the name it is given, as any attribute name is.
            getattr(sink, "_simq%d" % serial, None)
            serial += 1
        after = gc.mem_alloc()
        grown = after - before
        # The names of the batch made after the pool are already in it.
        if names_cost is not None and grown - names_cost >= \
                (_FIRMWARE_NAMES + _PREGROW_BATCH) * _BYTES_PER_POOL_ENTRY:
            break
        if names_cost is None or grown < 2 * names_cost:  # twice as much: a smaller pool
            names_cost = grown
        if serial % (8 * _PREGROW_BATCH) == 0:
            gc.collect()
            after = gc.mem_alloc()
        before = after
    gc.enable()


# The table of loaded modules is shared the same way: it grows (a new table, in one piece) when
# it fills, at a point that depends on how many modules the sim loaded. So it is grown here to
# leave room for this many of the firmware's modules; MicroPython keeps a table's size when
# entries are removed.
_FIRMWARE_MODULES = 96


def _pregrow_module_table():
    table = sys.modules
    names = ["_simm%d" % i for i in range(_FIRMWARE_MODULES)]
    for name in names:
        table[name] = None
    for name in names:
        del table[name]


# The characters of names live apart from the pools, in chunks that grow in place. The
# firmware's first names would fill whatever room the sim's last chunk has left, a number that
# depends on the sim's own names. So once the ballast holds the sim's side, names are interned
# until one finds no room at all: MicroPython then lets go of its last chunk, and the
# firmware's names start a chunk of their own in the firmware's share.
_CHUNK_ENDERS = ["_simend%03d" % _i for _i in range(128)]
_NAME_SINK = _NameSink()


def _end_name_chunk():
    for name in _CHUNK_ENDERS:
        try:
            getattr(_NAME_SINK, name, None)
        except MemoryError:
            return


_ROMFS_MAGIC = b"\xd2\xcd\x31"


def _romfs():
    # The romfs partition's image, read into memory (on the chip it is memory-mapped flash).
    entry = _simflash.find_partition("romfs")
    if entry is None or _rom_image is None:
        return None
    f = _simflash.image()
    f.seek(entry["offset"])
    f.readinto(_rom_image)
    if _rom_image[:3] != _ROMFS_MAGIC:
        return None
    return vfs.VfsRom(_rom_image)


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
    for name in settings.get("preload", []):
        __import__(name)
    fs_entry = _simflash.find_partition("vfs")
    bdev = _simflash.FlashPartition(fs_entry["offset"], fs_entry["size"])
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
    rom = _romfs()
    vfs.umount("/")
    vfs.mount(fs, "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    if rom is not None:
        # As the ESP32 port does with a romfs partition: code there runs in place.
        vfs.mount(rom, "/rom")
        sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "/lib"]
    # Everything the sim needs to run the firmware is made before the firmware's share is.
    runner = _simrun.Runner(_run_source, _file_exists, _print_exception)
    _pregrow_name_pool()
    _pregrow_module_table()
    _release_firmware_heap()
    runner.boot(script_source)


try:
    main()
except _simcore.SimExit as e:
    _simrun.report_exit(e.reason, e.detail)
