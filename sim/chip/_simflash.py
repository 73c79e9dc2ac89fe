# The virtual device's flash: the partitions of one image file, with NOR flash semantics and
# power cuts at any write (the host asks for one at a given write, or by chance from the seed).
# Part of the chip's side, used by esp32.Partition, the filesystem mount and the boot script.
from _simexit import PowerCut

BLOCK_SIZE = 4096
_IOCTL_INIT = 1
_IOCTL_DEINIT = 2
_IOCTL_SYNC = 3
_IOCTL_BLOCK_COUNT = 4
_IOCTL_BLOCK_SIZE = 5
_IOCTL_BLOCK_ERASE = 6

writes = 0  # programs and erases since boot
dead = False
_flash_file = None
_settings = {}
_rng = None  # torn-write lengths
_cut_rng = None  # which write is cut: a stream of its own, so cuts do not shift with others


def start(settings, rng, cut_rng):
    # Opened now, by a path relative to the work folder, while the host's filesystem is still
    # the root (on MicroPython the littlefs partition replaces it before the firmware runs).
    global _settings, _rng, _cut_rng
    _settings = settings
    _rng = rng
    _cut_rng = cut_rng
    image()


def image():
    global _flash_file
    if _flash_file is None:
        _flash_file = open(_settings["image"], "r+b")
    return _flash_file


def _count_write():
    # Every program or erase is one write; the host may ask for power to fail at one of them.
    global writes
    if dead:
        raise PowerCut()
    writes += 1
    if writes == _settings.get("cut_at_write", -1):
        return True
    chance = _settings.get("cut_chance", 0)
    return bool(chance) and _cut_rng.below(1000000) < chance * 1000000


def _cut():
    global dead
    dead = True
    image().flush()
    raise PowerCut()


# Scratch space for flash operations, allocated once at import, before the firmware's heap
# share is fixed, so that flash I/O never takes heap from the firmware.
_ERASED = b"\xff" * BLOCK_SIZE
_scratch = bytearray(BLOCK_SIZE)


class FlashPartition:
    # A block device over one partition of the image, with NOR flash semantics: programming
    # only clears bits, erasing sets a whole block to 0xFF. Serves VfsLfs2 on MicroPython,
    # littlefs-python on CPython, and esp32.Partition under both.

    def __init__(self, offset, size):
        self.offset = offset
        self.size = size
        self.block_count = size // BLOCK_SIZE

    def readblocks(self, block, buf, offset=0):
        if dead:
            raise PowerCut()
        f = image()
        f.seek(self.offset + block * BLOCK_SIZE + offset)
        f.readinto(buf)

    def _program(self, addr, data):
        # NOR flash: new = old AND data. A write counted as the cut point is torn: a random
        # prefix reaches flash, then power fails.
        torn = _count_write()
        n = len(data)
        if torn:
            n = _rng.below(n)
        f = image()
        done = 0
        while done < n:
            chunk = min(n - done, BLOCK_SIZE)
            view = memoryview(_scratch)[:chunk]
            f.seek(self.offset + addr + done)
            f.readinto(view)
            for i in range(chunk):
                view[i] &= data[done + i]
            f.seek(self.offset + addr + done)
            f.write(view)
            done += chunk
        if torn:
            _cut()

    def erase(self, block):
        torn = _count_write()
        n = _rng.below(BLOCK_SIZE) if torn else BLOCK_SIZE
        f = image()
        f.seek(self.offset + block * BLOCK_SIZE)
        f.write(memoryview(_ERASED)[:n])
        if torn:
            _cut()

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            # The simple interface erases whole blocks before programming them.
            for i in range((len(buf) + BLOCK_SIZE - 1) // BLOCK_SIZE):
                self.erase(block + i)
            offset = 0
        self._program(block * BLOCK_SIZE + offset, buf)

    def ioctl(self, op, arg):
        if op == _IOCTL_BLOCK_COUNT:
            return self.block_count
        if op == _IOCTL_BLOCK_SIZE:
            return BLOCK_SIZE
        if op == _IOCTL_BLOCK_ERASE:
            self.erase(arg)
            return 0
        if op == _IOCTL_SYNC:
            image().flush()
        return 0


def partition_table():
    return _settings.get("partitions", [])


def find_partition(name):
    for p in partition_table():
        if p["name"] == name:
            return p
    return None
