# The store-and-forward queue for routine readings: the sensors are sampled every
# report_interval_s, link or no link (run()), into a journal on flash (app.store), bounded,
# where they wait until the uplink has them delivered. After each report the queue calls
# on_report, the uplink's wake-up: counter events go with the next report.
# Counter and service events never come here: the counter's own journal holds them until the
# uplink acknowledges them. So when this queue is full, what it drops is always readings, the
# oldest first, and it counts them.
#
# A reading is one journal record (its seq is the reading's rseq). The queue owns its delivery
# cursor (the newest rseq the broker acknowledged): when every reading is delivered the journal
# is compacted empty, and the snapshot's seq says so; a delivery of only some of them (a
# backlog drained one message at a time) writes the cursor record (path + ".ack"). Records at
# or below the cursor are dead. Compaction keeps the newest undelivered readings in the
# snapshot: dropped u32 | (length u8 | record) ...
import asyncio
import struct
import time

from app import store
from micropython import const

DEFAULT_PATH = "/uplink.q"
DEFAULT_MAX_BYTES = const(6144)  # about a day and a half of readings every 15 min


class ReadingQueue:
    # sensors: app.sensors.Sensors, or None (the reports still happen); interval_s: the
    # config's report_interval_s, this part's own setting from then on (configure).
    def __init__(self, sensors=None, interval_s=0, log=None, path=DEFAULT_PATH,
                 max_bytes=DEFAULT_MAX_BYTES):
        self.sensors = sensors
        self.interval_s = interval_s
        self.log = log
        self.on_report = None  # fn(), set by the uplink: called after each report
        self.journal = store.Journal(path, max_bytes)
        self.delivered = 0  # rseq of the newest reading the broker acknowledged
        self.dropped = 0
        try:
            data = store.read_record(path + ".ack")
        except store.StoreError as e:
            # Readings the snapshot does not rule out go again; receivers drop repeats by rseq.
            data = None
            if log is not None:
                log.error("uplink", "readings cursor lost, resending: %s" % e)
        if data is not None and len(data) == 4:
            # Never past the journal: readings after a lost journal must not count as sent.
            self.delivered = min(struct.unpack("<I", data)[0], self.journal.last_seq)
        delivered = self.delivered
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

    def configure(self, key, value):
        # report_interval_s, from a config command (app.config names this part its owner):
        # the wait under way ends as it began, the next ones take the new interval. (A wait
        # that a change could cut short would hold a timeout task's worth of heap for good.)
        self.interval_s = value

    async def run(self):
        # The sampling task.
        from app.uplink.codec import reading_record

        while True:
            await asyncio.sleep(self.interval_s)
            values = self.sensors.readings() if self.sensors is not None else None
            if values:
                try:
                    self.push(reading_record(time.time(), values))
                except store.StoreError as e:
                    self.log.error("uplink", "reading not queued: %s" % e)
            if self.on_report is not None:
                self.on_report()

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
        # The broker has every reading up to rseq: one flash write says so. Once all are, the
        # journal is emptied (the snapshot's seq is the cursor); else the cursor record is.
        if rseq <= self.delivered:
            return
        self.delivered = rseq
        if rseq >= self.journal.last_seq:
            self._compact(0)
        else:
            store.write_record(self.journal.path + ".ack", struct.pack("<I", rseq))

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

