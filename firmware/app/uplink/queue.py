# The store-and-forward queue for routine readings: a journal on flash (app.store), bounded.
# Counter and service events never come here: the counter's own journal holds them until the
# uplink acknowledges them. So when this queue is full, what it drops is always readings, the
# oldest first, and it counts them.
#
# A reading is one journal record (its seq is the reading's rseq). Delivery moves a cursor that
# the uplink persists with its own state; records at or below it are dead. Compaction keeps the
# newest undelivered readings in the snapshot: dropped u32 | (length u8 | record) ...
import struct

from app import store
from micropython import const

DEFAULT_PATH = "/uplink.q"
DEFAULT_MAX_BYTES = const(6144)  # about a day and a half of readings every 15 min


class ReadingQueue:
    def __init__(self, delivered, path=DEFAULT_PATH, max_bytes=DEFAULT_MAX_BYTES):
        self.journal = store.Journal(path, max_bytes)
        self.delivered = delivered  # rseq of the newest reading the broker acknowledged
        self.dropped = 0
        snap = self.journal.snapshot()
        if snap is not None and len(snap[1]) >= 4:
            self.dropped = struct.unpack_from("<I", snap[1], 0)[0]
            # Readings older than the snapshot's are delivered or dropped, whatever the cursor
            # said: pending() counts only what is still here.
            kept = 0
            for _ in self._snapshot_items():
                kept += 1
            self.delivered = max(delivered, snap[0] - kept)

    def _snapshot_items(self):
        # (rseq, record) kept by the last compaction, oldest first.
        snap = self.journal.snapshot()
        if snap is None:
            return
        seq, data = snap
        items = []
        pos = 4
        while pos < len(data):
            n = data[pos]
            items.append(data[pos + 1:pos + 1 + n])
            pos += 1 + n
        first = seq - len(items) + 1
        for i, rec in enumerate(items):
            yield first + i, rec

    def items(self):
        # Every undelivered reading, oldest first: (rseq, record).
        for rseq, rec in self._snapshot_items():
            if rseq > self.delivered:
                yield rseq, rec
        for rseq, rec in self.journal.records():
            if rseq > self.delivered:
                yield rseq, rec

    def pending(self):
        return max(0, self.journal.last_seq - self.delivered)

    def push(self, rec):
        # Appends a reading; when the journal is full, first keeps only the newest undelivered
        # readings that fill half of it and counts the rest as dropped. Returns its rseq.
        if len(rec) > 255:
            raise store.StoreError("reading of %d bytes: at most 255" % len(rec))
        if not self.journal.fits(len(rec)):
            self._compact(self.journal.max_bytes // 2)
        return self.journal.append(rec)

    def ack(self, rseq):
        # The broker has every reading up to rseq; once all are, the journal is emptied.
        self.delivered = max(self.delivered, rseq)
        if self.delivered >= self.journal.last_seq and self.journal.size() > 0:
            self._compact(0)

    def _compact(self, room):
        keep = []
        size = 0
        lost = 0
        for _, rec in self.items():
            keep.append(rec)
            size += len(rec) + 1
            while size > room and keep:
                size -= len(keep.pop(0)) + 1
                lost += 1
        self.dropped += lost
        payload = bytearray(struct.pack("<I", self.dropped))
        for rec in keep:
            payload.append(len(rec))
            payload.extend(rec)
        self.journal.compact(payload)
        self.delivered = max(self.delivered, self.journal.last_seq - len(keep))
