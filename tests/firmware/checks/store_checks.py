"""Checks for app.store that run unchanged under MicroPython and CPython.

Each ``check_<name>`` runs in an empty working folder (tests/device/checkrun.py runs them).
Under MicroPython they run a second time on a littlefs filesystem in RAM (`use_littlefs`),
the filesystem the device uses.
"""

import binascii
import json
import os
import struct

from app import store
from app.store import Journal, StoreError
from checkhelp import expect, raises, raw_read, raw_write
from flash_faults import Cutter, PowerCut


def exists(path):
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def clean():
    for name in os.listdir():
        os.remove(name)


def run_check(fn):
    """Each check starts in an empty folder (see tests/device/checkrun.py)."""
    clean()
    fn()


# --- record files -------------------------------------------------------------------------


def check_record_roundtrip():
    expect(store.read_record("r.bin") is None, "missing record reads as None")
    store.write_record("r.bin", b"hello")
    crc = binascii.crc32(b"hello") & 0xFFFFFFFF
    want = b"MSKR\x01\x00" + struct.pack("<II", 5, crc) + b"hello"
    expect(raw_read("r.bin") == want, "record layout: magic, version, reserved, length, crc")
    expect(store.read_record("r.bin") == b"hello", "roundtrip")
    store.write_record("r.bin", b"")
    expect(store.read_record("r.bin") == b"", "empty payload, written over the old file")
    store.write_record("r.bin", bytearray(b"\x00\xff" * 100))
    expect(store.read_record("r.bin") == b"\x00\xff" * 100, "binary payload")
    expect(sorted(os.listdir()) == ["r.bin"], "no .tmp left after a write")


def check_record_corrupt():
    store.write_record("r.bin", b"payload")
    good = raw_read("r.bin")
    for i in range(len(good)):  # every single damaged byte is caught
        raw_write("r.bin", good[:i] + bytes([good[i] ^ 0x40]) + good[i + 1:])
        msg = raises(StoreError, store.read_record, "r.bin")
        expect("r.bin" in msg, "error names the path: " + msg)
    for n in range(len(good)):  # every truncation is caught
        raw_write("r.bin", good[:n])
        msg = raises(StoreError, store.read_record, "r.bin")
        expect("r.bin" in msg, "error names the path: " + msg)
    raw_write("r.bin", good[:3])
    expect("truncated header" in raises(StoreError, store.read_record, "r.bin"), "short header")
    raw_write("r.bin", good + b"x")
    expect("file holds 8" in raises(StoreError, store.read_record, "r.bin"), "trailing bytes")
    raw_write("r.bin", good[:-1] + b"X")
    expect("CRC" in raises(StoreError, store.read_record, "r.bin"), "damaged payload")
    raw_write("r.bin", good[:4] + b"\x07" + good[5:])
    expect("version 7" in raises(StoreError, store.read_record, "r.bin"), "unknown version")
    raw_write("r.bin", b"{}\n" + good)
    expect("magic" in raises(StoreError, store.read_record, "r.bin"), "not a record file")


def check_record_stray_tmp():
    store.write_record("r.bin", b"old")
    raw_write("r.bin.tmp", b"MSKR\x01half-written by a cut")
    expect(store.read_record("r.bin") == b"old", "a stray .tmp does not hide the record")
    raw_write("n.bin.tmp", b"junk")
    expect(store.read_record("n.bin") is None, "a stray .tmp is not a record")
    store.write_record("r.bin", b"new")
    expect(not exists("r.bin.tmp"), "the next write removes the stray .tmp")
    expect(store.read_record("r.bin") == b"new", "the next write lands")


def check_record_json():
    expect(store.read_json("c.json", {"d": 1}) == {"d": 1}, "missing file gives the default")
    expect(store.read_json("c.json") is None, "default default is None")
    obj = {"a": 1, "b": [1, "two", None, True], "c": {"d": 2.5}}
    store.write_json("c.json", obj)
    expect(store.read_json("c.json", {}) == obj, "json roundtrip")
    store.write_record("c.json", b"{not json")
    msg = raises(StoreError, store.read_json, "c.json", {})
    expect("c.json" in msg and "JSON" in msg, "invalid JSON: " + msg)


def check_record_json_streamed():
    # write_json streams the JSON to the file and reads its length and CRC back: the file is
    # the same record write_record makes of the JSON's bytes, and read_json checks it as well.
    obj = {"ids": [["c%d" % i, True, {"ok": True, "result": "x" * 20}, 1] for i in range(4)]}
    store.write_json("c.json", obj)
    expect(json.loads(store.read_record("c.json")) == obj, "a record of the JSON's bytes")
    expect(store.read_json("c.json") == obj, "read back whole (more than one chunk)")
    good = raw_read("c.json")
    raw_write("c.json", good[:-2] + b"0}")
    expect("CRC" in raises(StoreError, store.read_json, "c.json"), "damaged payload")
    raw_write("c.json", good[:-1])
    expect("file holds" in raises(StoreError, store.read_json, "c.json"), "truncated payload")
    store.write_json("c.json", [])
    raw_write("c.json.tmp", b"MSKR\x01half-written by a cut")
    expect(store.read_json("c.json") == [], "a stray .tmp does not hide the record")
    store.write_json("c.json", {"n": 1})
    expect(store.read_json("c.json") == {"n": 1} and not exists("c.json.tmp"),
           "the next write replaces the stray .tmp")


# --- journal ------------------------------------------------------------------------------


def journal_bytes(seq, payload):
    hdr = struct.pack("<HI", len(payload), seq)
    crc = binascii.crc32(payload, binascii.crc32(hdr)) & 0xFFFFFFFF
    return hdr + payload + struct.pack("<I", crc)


def counted(j):
    """Total count held by a journal whose snapshot and records are decimal counts."""
    snap = j.snapshot()
    total = int(snap[1]) if snap else 0
    for _, payload in j.records():
        total += int(payload)
    return total


def check_journal_basic():
    j = Journal("j.log", 4096)
    expect(j.last_seq == 0 and j.size() == 0, "empty journal")
    expect(list(j.records()) == [] and j.snapshot() is None, "nothing recorded yet")
    expect([j.append(b"a"), j.append(b"bb"), j.append(b"")] == [1, 2, 3], "seqs count from 1")
    expect(raw_read("j.log")[:15] == journal_bytes(1, b"a") + journal_bytes(2, b"bb")[:4],
           "record layout: length, seq, payload, crc")
    want = [(1, b"a"), (2, b"bb"), (3, b"")]
    expect(list(j.records()) == want, "records in order")
    expect(j.size() == 3 * store.JOURNAL_OVERHEAD + 3, "size counts every byte")
    j.close()
    j = Journal("j.log", 4096)
    expect(list(j.records()) == want and j.last_seq == 3, "reopened journal")
    expect(j.append(b"d") == 4, "appends continue the sequence")
    j.close()


def check_journal_torn_tail():
    j = Journal("j.log", 4096)
    for payload in (b"10", b"20", b"30"):
        j.append(payload)
    j.close()
    full = raw_read("j.log")
    start = len(full) - len(journal_bytes(3, b"30"))
    for cut in range(start, len(full)):  # a cut at every byte of the last append
        raw_write("j.log", full[:cut])
        j = Journal("j.log", 4096)
        expect(list(j.records()) == [(1, b"10"), (2, b"20")], f"cut at {cut}: intact prefix")
        expect(j.last_seq == 2 and j.size() == start, f"cut at {cut}: tail dropped")
        expect(len(raw_read("j.log")) == start, f"cut at {cut}: tail removed from the file")
        expect(j.append(b"31") == 3, f"cut at {cut}: seq reused for the lost record")
        j.close()
        j = Journal("j.log", 4096)
        expect(list(j.records())[-1] == (3, b"31"), f"cut at {cut}: new append is readable")
        expect(counted(j) == 61, f"cut at {cut}: count")
        j.close()


def check_journal_garbage_tail():
    j = Journal("j.log", 4096)
    j.append(b"1")
    j.append(b"2")
    j.close()
    good = raw_read("j.log")
    tails = (
        b"\xff" * 40,  # erased flash
        b"\x00" * 40,
        struct.pack("<HI", 60000, 3) + b"x",  # a length that runs past the file
        journal_bytes(1, b"1"),  # intact record, out of sequence
        journal_bytes(3, b"3")[:-1] + b"\x00",  # bad crc
    )
    for tail in tails:
        raw_write("j.log", good + tail)
        j = Journal("j.log", 4096)
        expect(list(j.records()) == [(1, b"1"), (2, b"2")], f"garbage {tail[:6]!r} ignored")
        expect(raw_read("j.log") == good, f"garbage {tail[:6]!r} removed")
        j.close()
    raw_write("j.log", b"\xff" * 40)
    j = Journal("j.log", 4096)
    expect(j.last_seq == 0 and j.size() == 0 and raw_read("j.log") == b"", "all garbage")
    j.close()


def check_journal_compact():
    j = Journal("j.log", 4096)
    for _ in range(5):
        j.append(b"1")
    j.compact(b"5")
    expect(j.snapshot() == (5, b"5"), "snapshot holds the state and its seq")
    expect(list(j.records()) == [] and j.size() == 0 and j.last_seq == 5, "journal restarted")
    expect(j.append(b"1") == 6, "seqs continue after compaction")
    j.close()
    j = Journal("j.log", 4096)
    expect(j.snapshot() == (5, b"5") and list(j.records()) == [(6, b"1")], "reopened")
    expect(counted(j) == 6, "count survives compaction")
    j.compact(b"6")
    j.compact(b"6")
    expect(j.snapshot() == (6, b"6") and counted(j) == 6, "compacting twice is harmless")
    expect(sorted(os.listdir()) == ["j.log", "j.log.snap"], "no .tmp left")
    j.close()


def check_journal_compact_cuts():
    j = Journal("j.log", 4096)
    for _ in range(3):
        j.append(b"1")
    j.close()
    before = raw_read("j.log")
    # Cut while writing the snapshot: its .tmp is left, nothing else changed.
    raw_write("j.log.snap.tmp", b"MSKR\x01\x00half")
    j = Journal("j.log", 4096)
    expect(j.snapshot() is None and counted(j) == 3, "cut in step 1 loses nothing")
    # Cut after the snapshot's rename, before the journal's: new snapshot, old journal.
    j.compact(b"3")
    j.close()
    raw_write("j.log", before)
    j = Journal("j.log", 4096)
    expect(list(j.records()) == [] and counted(j) == 3, "cut in step 2 counts nothing twice")
    expect(j.size() == 0 and raw_read("j.log") == b"", "reopening finishes the compaction")
    expect(j.append(b"1") == 4 and counted(j) == 4, "appends continue after the snapshot")
    j.close()
    # Cut after everything: compact() completed.
    j = Journal("j.log", 4096)
    j.compact(b"4")
    j.close()
    expect(counted(Journal("j.log", 4096)) == 4, "completed compaction")


def check_journal_full():
    j = Journal("j.log", 64)
    expect(j.fits(54) and not j.fits(55), "fits() counts the record overhead")
    n = 0
    while j.fits(4):
        j.append(b"0001")
        n += 1
    expect(n == 4 and j.size() == 56, "four 14-byte records fill 64 bytes")
    msg = raises(StoreError, j.append, b"0001")
    expect("full" in msg and "j.log" in msg, "full journal: " + msg)
    j.compact(b"4")
    expect(j.append(b"0001") == 5 and counted(j) == 5, "room again after compaction")
    j.close()


def check_journal_bad_snapshot():
    j = Journal("j.log", 4096)
    j.append(b"1")
    j.compact(b"1")
    j.close()
    snap = raw_read("j.log.snap")
    raw_write("j.log.snap", snap[:-1] + bytes([snap[-1] ^ 1]))
    msg = raises(StoreError, Journal, "j.log", 4096)
    expect("j.log.snap" in msg, "a damaged snapshot is reported, not ignored: " + msg)


# --- power cuts at every flash operation -------------------------------------------------


def every_cut(setup, action, verify, fail=PowerCut):
    """For each flash operation of ``action``: args = setup(), fail that operation while
    running action(*args), then verify(completed, args). Stops once action completes."""
    at = 1
    while True:
        clean()
        args = setup()
        cutter = Cutter(at, fail)
        store.os = cutter
        store.open = cutter.open  # type: ignore[attr-defined]  # the check's fault-injection seam
        try:
            action(*args)
            completed = True
        except (PowerCut, StoreError):
            completed = False
        finally:
            cutter.at = 0  # files the action left open stop failing
            store.os = os
            store.open = open  # type: ignore[attr-defined]  # the check's fault-injection seam
        verify(completed, args)
        if completed:
            return
        at += 1


def check_power_cut_write_record():
    def setup():
        store.write_record("r.bin", b"old")
        return ("r.bin", b"new")

    def verify(completed, _):
        got = store.read_record("r.bin")
        expect(got == b"new" if completed else got in (b"old", b"new"), "old or new: %r" % got)

    every_cut(setup, store.write_record, verify)


def journal_with(n, compacted=0):
    j = Journal("j.log", 4096)
    if compacted:
        for _ in range(compacted):
            j.append(b"1")
        j.compact(b"%d" % compacted)
    for _ in range(n):
        j.append(b"1")
    j.close()  # the action under test opens its files through the Cutter
    return j


def reopened_count():
    j = Journal("j.log", 4096)
    total = counted(j)
    j.append(b"1")  # an append after recovery is counted once, never lost behind garbage
    j.close()
    expect(counted(Journal("j.log", 4096)) == total + 1, "append after recovery")
    return total


def check_power_cut_append():
    def verify(completed, _):
        total = reopened_count()
        expect(total == 4 if completed else total in (3, 4), "count %d" % total)

    every_cut(lambda: (journal_with(2, compacted=1), b"1"), Journal.append, verify)


def check_power_cut_compact():
    def verify(completed, _):
        expect(reopened_count() == 5, "compaction neither loses nor doubles a count")

    every_cut(lambda: (journal_with(3, compacted=2), b"5"), Journal.compact, verify)


def check_power_cut_open_repair():
    def setup():
        journal_with(3)
        raw_write("j.log", raw_read("j.log")[:-3])  # torn last append
        return ("j.log", 4096)

    def verify(completed, _):
        expect(reopened_count() == 2, "repairing a torn tail keeps the intact records")

    every_cut(setup, Journal, verify)


def still_counts(j, total):
    """The same Journal object, after a failed call, holds ``total`` and keeps counting."""
    expect(counted(j) == total, "count %d, want %d" % (counted(j), total))
    j.append(b"1")
    j.close()
    expect(counted(j) == total + 1, "append after a flash error")
    expect(counted(Journal("j.log", 4096)) == total + 1, "reopened after a flash error")


def check_flash_error_append():
    def verify(completed, args):
        still_counts(args[0], 4 if completed else 3)

    every_cut(lambda: (journal_with(2, compacted=1), b"1"), Journal.append, verify, OSError)


def check_flash_error_compact():
    def verify(completed, args):
        still_counts(args[0], 5)

    every_cut(lambda: (journal_with(3, compacted=2), b"5"), Journal.compact, verify, OSError)


# --- littlefs -----------------------------------------------------------------------------


class RAMBlockDev:
    """Block device in RAM with the extended interface littlefs uses (reads and writes stay
    inside one block). One bytearray per block, so no allocation needs a large free run."""

    def __init__(self, block_size, blocks):
        self.block_size = block_size
        self.blocks = [bytearray(block_size) for _ in range(blocks)]

    def readblocks(self, block, buf, offset=0):
        buf[:] = self.blocks[block][offset:offset + len(buf)]

    def writeblocks(self, block, buf, offset=0):
        offset = offset or 0
        self.blocks[block][offset:offset + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return len(self.blocks)
        if op == 5:  # block size
            return self.block_size
        return 0  # sync, erase: nothing to do in RAM


def mount_littlefs(where):
    """Mount a fresh 16 KiB littlefs at ``where``; False if this interpreter has no VfsLfs2."""
    if not hasattr(os, "VfsLfs2"):
        return False
    dev = RAMBlockDev(256, 64)
    os.VfsLfs2.mkfs(dev)
    os.mount(os.VfsLfs2(dev), where)
    return True


def use_littlefs():
    """Go on in a fresh littlefs in RAM, the filesystem the device uses; False if this
    interpreter has none. The fault-injection checks (power_cut_*, flash_error_*) abandon
    littlefs files mid-operation, which the MicroPython unix port's littlefs does not always
    survive in-process, so they stay off it; block-level power cuts on littlefs are covered by
    tests/firmware/test_power_cut_store.py, which ends the device process at the cut as real
    power loss would."""
    if not mount_littlefs("/lfs"):
        return False
    os.chdir("/lfs")
    return True
