"""Checks for app.ota.delta that run unchanged under MicroPython and CPython.

The deltas come from the host (musket.ota.delta), written by the test that runs this module
into ../fixtures/ (see tests/ota/test_delta_interpreters.py): for each NAME, NAME.base (the base
image), NAME.delta (the operations as the bundle's payload holds them: one zlib stream, 4 KB
window), NAME.ops (the same operations uncompressed) and NAME.json (the new image's size and
SHA-256, the base's size). The malformed deltas are written here, byte by byte.
"""

import binascii
import gc
import hashlib
import io
import json

import deflate
from app.ota import delta

FIXTURES = "../fixtures/"
BUF = 512  # bytes: the one buffer every copy goes through, as on the device
HEAP_GROWTH_MAX = 8192  # bytes the applier may allocate while rebuilding a 100 KB image


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def raises(fn, *args):
    """fn(*args) must raise ValueError; returns its message."""
    try:
        fn(*args)
    except ValueError as e:
        return str(e)
    raise AssertionError("no ValueError")


class Sink:
    """The other slot: hashes and counts what is written."""

    def __init__(self):
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def hex(self):
        return binascii.hexlify(self.hash.digest()).decode()


class ReadOnly:
    """A source with read(n) only."""

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def read(self, n):
        return self._data.read(n)


def meta(name):
    with open(FIXTURES + name + ".json") as f:
        return json.load(f)


def apply_fixture(name, compressed=True, buf_size=BUF):
    info = meta(name)
    out = Sink()
    with open(FIXTURES + name + ".base", "rb") as base:
        with open(FIXTURES + name + (".delta" if compressed else ".ops"), "rb") as raw:
            source = deflate.DeflateIO(raw, deflate.ZLIB, 12) if compressed else raw
            written = delta.apply(source, base, out, bytearray(buf_size), info["size"],
                                  info["base_size"])
    expect(written == info["size"], "wrote %d bytes, expected %d" % (written, info["size"]))
    expect(out.size == written, "the sink got %d bytes" % out.size)
    expect(out.hex() == info["sha256"], "the rebuilt image's SHA-256 differs")


# --- deltas made on the host ---------------------------------------------------------------


def check_random_pair():
    apply_fixture("random")


def check_real_image():
    apply_fixture("image")


def check_identical_images():
    apply_fixture("same")


def check_empty_base_is_all_adds():
    apply_fixture("empty")


def check_uncompressed_ops_from_a_file():
    apply_fixture("random", compressed=False)


def check_small_and_odd_buffers():
    apply_fixture("random", buf_size=1)
    apply_fixture("image", buf_size=333)


def check_a_source_with_read_only():
    info = meta("random")
    with open(FIXTURES + "random.ops", "rb") as f:
        ops = f.read()
    out = Sink()
    with open(FIXTURES + "random.base", "rb") as base:
        delta.apply(ReadOnly(ops), base, out, bytearray(BUF), info["size"])
    expect(out.hex() == info["sha256"], "the rebuilt image's SHA-256 differs")


def check_heap_stays_bounded():
    # Every allocation the applier makes while it rebuilds a 100 KB image, garbage included
    # (collection is off meanwhile): it must not grow with the image.
    info = meta("heap")
    expect(info["size"] >= 100000, "the fixture is a 100 KB image")
    buf = bytearray(BUF)
    out = Sink()
    with open(FIXTURES + "heap.base", "rb") as base, open(FIXTURES + "heap.ops", "rb") as ops:
        if hasattr(gc, "mem_alloc"):
            gc.collect()
            gc.disable()
            before = gc.mem_alloc()
            try:
                delta.apply(ops, base, out, buf, info["size"], info["base_size"])
                grown = gc.mem_alloc() - before
            finally:
                gc.enable()
        else:
            import tracemalloc  # CPython's; MicroPython takes the branch above

            tracemalloc.start()
            try:
                delta.apply(ops, base, out, buf, info["size"], info["base_size"])
                grown = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    expect(out.hex() == info["sha256"], "the rebuilt image's SHA-256 differs")
    print("heap growth", grown)
    expect(grown < HEAP_GROWTH_MAX, "the applier allocated %d bytes" % grown)


# --- malformed deltas ----------------------------------------------------------------------

BASE = bytes(range(256)) * 4
BASE_SIZE = 1024


def run(ops, image_size, base_size=BASE_SIZE):
    return delta.apply(io.BytesIO(ops), io.BytesIO(BASE), Sink(), bytearray(16), image_size,
                       base_size)


def check_well_formed_by_hand():
    # copy 10 bytes at 250 (3 wrap past 255), add "xyz", end
    expect(run(b"\x01\xfa\x01\x0a\x02\x03xyz\x00", 13) == 13, "13 bytes")
    out = Sink()
    delta.apply(io.BytesIO(b"\x01\xfa\x01\x0a\x02\x03xyz\x00"), io.BytesIO(BASE), out,
                bytearray(4), 13)
    expect(out.hex() == binascii.hexlify(hashlib.sha256(
        BASE[250:260] + b"xyz").digest()).decode(), "copy then add")


def refused(ops, image_size, words, base_size=BASE_SIZE):
    """Applying `ops` raises ValueError saying `words`."""
    message = raises(run, ops, image_size, base_size)
    expect(words in message, message)


def check_truncated_operations():
    for ops in (b"", b"\x01", b"\x01\x05", b"\x01\x05\x85", b"\x02\x05abc", b"\x02\x03xyz"):
        refused(ops, 10, "truncated")


def check_copy_outside_the_base():
    refused(b"\x01\xf0\x07\x20\x00", 32, "outside the base")
    # Without the base's size, the base's own end stops it.
    refused(b"\x01\xf0\x07\x20\x00", 32, "outside the base", None)


def check_overlong_varint():
    refused(b"\x02\x80\x80\x80\x80\x80\x00", 0, "varint longer than 5 bytes")


def check_output_longer_than_the_image():
    refused(b"\x02\x05hello\x00", 4, "longer than the image")
    refused(b"\x01\x00\x0a\x01\x00\x0a\x00", 15, "longer than the image")


def check_bytes_after_the_end():
    refused(b"\x02\x02hi\x00\x00", 2, "after the end")


def check_unknown_operation():
    refused(b"\x03\x00", 0, "unknown operation 0x03")


def check_output_shorter_than_the_image():
    refused(b"\x02\x02hi\x00", 3, "rebuilt 2 bytes")
