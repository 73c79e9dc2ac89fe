"""Power-safe storage: atomic record files and an append-only journal.

Everything that must survive a power cut goes through this module. No file is ever
rewritten in place:

* A record file holds one value. It is written to ``path + ".tmp"``, flushed, closed and
  renamed over ``path``. On littlefs the rename is atomic and replaces the old file, so a
  cut leaves the old value or the new one, never a mix. A stray ``.tmp`` is ignored by
  readers and replaced by the next write.
* A journal holds a run of small changes (a count, a queued message). Each append adds one
  CRC'd record at the end and flushes it (on littlefs a flush commits the file). A cut
  mid-append leaves a torn tail; the next open copies the intact prefix to
  ``path + ".tmp"`` and renames it over the journal. Compaction folds the records into a
  snapshot and starts an empty journal (see Journal.compact for the order).

Record file, little-endian::

    b"MSKR" | version u8 (1) | reserved u8 (0) | length u32 | crc32(payload) u32 | payload

Journal record, little-endian (the journal file is these records back to back)::

    length u16 | seq u32 | payload | crc32(length, seq, payload) u32

A journal's snapshot lives in the record file ``path + ".snap"``; its payload is
``seq u32 | snapshot payload``, where seq is the last journal record it includes.
"""

import binascii
import errno
import json
import os
import struct

from app.errors import FirmwareError
from micropython import const

_REC_MAGIC = const(b"MSKR")
_REC_VERSION = const(1)
_REC_FMT = const("<4sBBII")
_REC_HDR = const(14)
_J_FMT = const("<HI")
_J_HDR = const(6)
_J_CRC = const(4)
_J_MAX_PAYLOAD = const(0xFFFF)
_COPY_CHUNK = const(256)  # bytes copied per step when a torn journal is rewritten
_CRC_CHUNK = const(64)  # bytes of a JSON record checked per step

JOURNAL_OVERHEAD = const(10)  # bytes a journal record adds to its payload


class StoreError(FirmwareError):
    """A stored file is damaged or cannot be read or written; the message names the path."""


def _crc(data, crc=0):
    return binascii.crc32(data, crc) & 0xFFFFFFFF


def _failed(path, what, exc):
    # The error for a flash operation that raised OSError.
    return StoreError("%s: %s failed: %s" % (path, what, exc))


def _file_size(path):
    """Size of ``path`` in bytes; -1 if it does not exist."""
    try:
        return os.stat(path)[6]
    except OSError as e:
        if e.args and e.args[0] == errno.ENOENT:
            return -1
        raise StoreError("%s: cannot stat: %s" % (path, e))


def write_record(path, data):
    """Replace the record at ``path`` with the bytes ``data``; a cut leaves old or new."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:  # "wb" truncates a .tmp an earlier cut left behind
            f.write(struct.pack(_REC_FMT, _REC_MAGIC, _REC_VERSION, 0, len(data), _crc(data)))
            f.write(data)
            f.flush()
        os.rename(tmp, path)
    except OSError as e:
        raise _failed(path, "write", e)


def _read_header(path, f, size):
    # -> (payload length, crc) from the record header at the start of the open file `f`.
    if size < _REC_HDR:
        raise StoreError("%s: truncated header (%d of %d bytes)" % (path, size, _REC_HDR))
    magic, version, reserved, length, crc = struct.unpack(_REC_FMT, f.read(_REC_HDR))
    if magic != _REC_MAGIC:
        raise StoreError("%s: not a record file (magic %r)" % (path, magic))
    if version != _REC_VERSION or reserved:
        raise StoreError("%s: unsupported format version %d.%d" % (path, version, reserved))
    if size != _REC_HDR + length:
        raise StoreError("%s: header says %d payload bytes, file holds %d"
                         % (path, length, size - _REC_HDR))
    return length, crc


def read_record(path):
    """Return the payload stored at ``path``; None if there is no such file.

    Raises StoreError naming the path and the damage if the file is corrupt or truncated.
    """
    size = _file_size(path)
    if size < 0:
        return None
    try:
        with open(path, "rb") as f:
            length, crc = _read_header(path, f, size)
            data = f.read(length)
    except OSError as e:
        raise _failed(path, "read", e)
    if len(data) != length:
        raise StoreError("%s: short read (%d of %d bytes)" % (path, len(data), length))
    if _crc(data) != crc:
        raise StoreError("%s: CRC mismatch, payload damaged" % path)
    return data


def write_json(path, obj):
    """Store ``obj`` as JSON in an atomic record file; a cut leaves old or new."""
    # The record of write_record, but the JSON goes to the file as it is made and the header's
    # length and CRC are read back from the file: no copy of the whole record is made in RAM,
    # where it would need one free block of its size (what a fragmented heap lacks first).
    tmp = path + ".tmp"
    try:
        with open(tmp, "w+b") as f:  # "w" truncates a .tmp an earlier cut left behind
            f.write(bytes(_REC_HDR))  # the header's place, filled in once the payload is known
            try:
                json.dump(obj, f)  # a MicroPython file takes str, as its UTF-8 bytes
            except TypeError:  # a binary file of CPython's does not (host tools, checks)
                f.write(json.dumps(obj).encode())
            f.seek(_REC_HDR)
            length, crc = _stream_crc(f)
            f.seek(0)
            f.write(struct.pack(_REC_FMT, _REC_MAGIC, _REC_VERSION, 0, length, crc))
            f.flush()
        os.rename(tmp, path)
    except OSError as e:
        raise _failed(path, "write", e)


def read_json(path, default=None):
    """Return the object stored by write_json at ``path``, or ``default`` if there is none."""
    # The CRC is checked a chunk at a time and the JSON parsed from the file: as in write_json,
    # no copy of the whole record is made in RAM.
    size = _file_size(path)
    if size < 0:
        return default
    try:
        with open(path, "rb") as f:
            length, crc = _read_header(path, f, size)
            if _stream_crc(f) != (length, crc):
                raise StoreError("%s: CRC mismatch, payload damaged" % path)
            f.seek(_REC_HDR)
            try:
                return json.load(f)
            except ValueError as e:
                raise StoreError("%s: payload is not valid JSON: %s" % (path, e))
    except OSError as e:
        raise _failed(path, "read", e)


def _stream_crc(f):
    # -> (bytes, crc32) of the rest of the file, read a chunk at a time.
    buf = bytearray(_CRC_CHUNK)
    length = 0
    crc = 0
    while True:
        n = f.readinto(buf)
        if not n:
            return length, crc
        crc = _crc(memoryview(buf)[:n], crc)
        length += n


class Journal:
    """Append-only log of CRC'd records plus the snapshot its last compaction left.

    To recover state: start from ``snapshot()`` (or nothing) and apply ``records()``.
    ``max_bytes`` bounds the journal file; compact before ``fits()`` turns False.
    Raises StoreError if the snapshot is damaged or the flash fails.
    """

    def __init__(self, path, max_bytes):
        self.path = path
        self.max_bytes = max_bytes
        self._snap_path = path + ".snap"
        self._rhdr = bytearray(_J_HDR)
        self._rcrc = bytearray(_J_CRC)
        self._whdr = bytearray(_J_HDR)
        self._wcrc = bytearray(_J_CRC)
        self._f = None
        self._torn = False
        snap = self.snapshot()
        self._snap_seq = snap[0] if snap else 0
        keep = 0
        last = 0
        for seq, _, end in self._walk():
            keep, last = end, seq
        if last <= self._snap_seq:
            keep = 0  # every record is already in the snapshot: finish a cut compaction
        self._size = keep
        if max(_file_size(path), 0) != keep:
            self._rewrite(keep)  # cut off a torn tail so no append ever follows garbage
        self.last_seq = max(last, self._snap_seq)

    def _walk(self):
        """Yield (seq, payload, end offset) of each intact record; stop at the first bad one."""
        size = _file_size(self.path)
        if size < 0:
            return
        hdr, tail = self._rhdr, self._rcrc
        end = 0
        prev = -1
        with open(self.path, "rb") as f:
            while f.readinto(hdr) == _J_HDR:
                n, seq = struct.unpack(_J_FMT, hdr)
                if end + n + JOURNAL_OVERHEAD > size:
                    return  # torn, or a garbage length: never read past the file
                if prev >= 0 and seq != prev + 1:
                    return  # appends number records consecutively: garbage
                payload = f.read(n)
                if len(payload) != n or f.readinto(tail) != _J_CRC:
                    return  # torn
                if struct.unpack("<I", tail)[0] != _crc(payload, _crc(hdr)):
                    return
                end += n + JOURNAL_OVERHEAD
                prev = seq
                yield seq, payload, end

    def _rewrite(self, keep):
        """Replace the journal file with its first ``keep`` bytes, via .tmp and rename."""
        self.close()
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "wb") as dst:
                if keep:
                    buf = memoryview(bytearray(_COPY_CHUNK))
                    with open(self.path, "rb") as src:
                        left = keep
                        while left:
                            n = src.readinto(buf[:min(left, _COPY_CHUNK)])
                            if not n:
                                raise StoreError("%s: shrank while being copied" % self.path)
                            dst.write(buf[:n])
                            left -= n
                dst.flush()
            os.rename(tmp, self.path)
        except OSError as e:
            raise _failed(self.path, "rewrite", e)

    def snapshot(self):
        """Return (seq, payload) written by the last compact(), or None if there is none."""
        data = read_record(self._snap_path)
        if data is None:
            return None
        if len(data) < 4:
            raise StoreError("%s: snapshot too short" % self._snap_path)
        return struct.unpack("<I", data[:4])[0], data[4:]

    def records(self):
        """Yield (seq, payload) of each intact record newer than the snapshot, oldest first."""
        for seq, payload, _ in self._walk():
            if seq > self._snap_seq:
                yield seq, payload

    def fits(self, n):
        """True if a record with an ``n``-byte payload can still be appended."""
        return n <= _J_MAX_PAYLOAD and self._size + n + JOURNAL_OVERHEAD <= self.max_bytes

    def append(self, payload):
        """Append ``payload`` (bytes) as one record, flushed to flash; return its seq."""
        n = len(payload)
        if not self.fits(n):
            raise StoreError("%s: journal full (%d of %d bytes used, record needs %d); compact it"
                             % (self.path, self._size, self.max_bytes, n + JOURNAL_OVERHEAD))
        if self._torn:
            self._rewrite(self._size)  # an earlier append failed part-way
            self._torn = False
        seq = self.last_seq + 1
        struct.pack_into(_J_FMT, self._whdr, 0, n, seq)
        struct.pack_into("<I", self._wcrc, 0, _crc(payload, _crc(self._whdr)))
        # Opened for this append and closed after it: an open littlefs file holds its object
        # and cache (about 250 bytes) on the heap, and a handle kept between appends would be
        # made again after every compaction, wherever the heap had a hole by then, so that
        # over days the open handles of three journals would wander and split the free heap.
        # Made and let go within one call, it only ever borrows the heap. The close commits
        # the record as the flush did (littlefs syncs the file on both).
        try:
            self._f = open(self.path, "ab")
            self._f.write(self._whdr)
            self._f.write(payload)
            self._f.write(self._wcrc)
            f, self._f = self._f, None
            f.close()
        except OSError as e:
            self._torn = True  # part of the record may be on flash: cut it off before appending
            f, self._f = self._f, None
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass  # the handle is already broken; the append error is the one to report
            raise _failed(self.path, "append", e)
        self._size += n + JOURNAL_OVERHEAD
        self.last_seq = seq
        return seq

    def compact(self, snapshot_payload):
        """Replace all history with ``snapshot_payload``, the state as of ``last_seq``.

        Order, and what a power cut at each point leaves behind:
        1. The snapshot (last_seq + payload) is written with write_record. A cut before its
           rename leaves the old snapshot and the whole journal: nothing changed.
        2. An empty file is renamed over the journal. A cut before this rename leaves the new
           snapshot next to the old journal, whose records all have seq <= the snapshot's
           seq: records() skips them, so none counts twice, and the next open empties it.
        Every later append gets a seq above the snapshot's, so each record is counted either
        in the snapshot or after it, never both.
        """
        self.close()
        write_record(self._snap_path, struct.pack("<I", self.last_seq) + bytes(snapshot_payload))
        self._snap_seq = self.last_seq
        self._rewrite(0)
        self._size = 0
        self._torn = False

    def size(self):
        """Bytes in the journal file (the snapshot not included)."""
        return self._size

    def close(self):
        """Close the append handle; the journal reopens it on the next append."""
        if self._f is not None:
            f, self._f = self._f, None
            try:
                f.close()
            except OSError as e:
                raise _failed(self.path, "close", e)
