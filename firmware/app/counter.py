"""Usage counters that never lose a count, and the queue of events the uplink delivers.

Every change is one record appended to a store.Journal, flushed before the caller hears of
it: a use ("brews" +1), a service event raised by a rule crossing, an adjustment with its
reason, or the uplink's acknowledgement. The journal is also the must-deliver queue: there is
no second write per event. Record payload, little-endian::

    event seq u32 | time u32 | kind u8 | delta i32 | total i32 | name | 0 | info

Counters are integers in their own unit; a counter in SCALES is kept in milli-units so that
adding 0.33 l ten thousand times on a 32-bit float port still adds up ("litres" is held in
millilitres and reported in litres). Each record carries the counter's new total, so replay
sets values rather than adding to them, and a record is applied only if its event seq is the
next one: no event counts twice, whatever a cut left behind.

When the journal is full it rolls over. If all its events are acknowledged it is compacted
(snapshot first, then an empty journal: see store.Journal.compact). If not, the file is first
renamed to an archive ``a<first>-<last>`` (atomic, nothing copied, so no extra wear), then
compacted; archives are read by events_after() and removed once acknowledged. A cut between the
rename and the snapshot leaves the events in the archive, where the next open finds them.
"""

import json
import os
import struct
import time

from app import store
from app.errors import FirmwareError
from micropython import const

DIR = "/counters"
SEGMENT_BYTES = const(2048)  # journal bytes before a rollover: half a flash block
_FREE_BLOCKS_MIN = const(8)  # below this many free blocks the oldest archive goes
_REC = const("<IIBii")
_REC_LEN = const(17)
_INFO_MAX = const(48)
_STATE_VERSION = const(1)
_USE = const(0)
_SERVICE = const(1)
_ADJUST = const(2)
_ACK = const(3)  # the uplink's acknowledgement: a record, not an event
SCALES = {"litres": 1000}  # counters held in milli-units
_I32_MAX = const(0x7FFFFFFF)


class CounterError(FirmwareError):
    """A counter change was refused (bad name, value or reason); nothing was written."""


def parse_rules(text):
    """Parse "brews/200:reorder-beans;litres@1000:replace-filter" into (rules, problems).

    ``name/N:action`` raises a service event at every N; ``name@N:action`` once when the
    counter reaches N (again only after an adjustment takes it below N).
    Each rule is (counter, step or 0, at or 0, action), thresholds in the counter's units.
    """
    rules = []
    problems = []
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        try:
            head, action = part.split(":")
            every = "/" in head
            name, n = head.split("/" if every else "@")
            n = int(n) * SCALES.get(name.strip(), 1)
            if n <= 0 or not name.strip() or not action.strip():
                raise ValueError
        except ValueError:
            problems.append("service rule %r: expected name/N:action or name@N:action" % part)
            continue
        rules.append((name.strip(), n if every else 0, 0 if every else n, action.strip()))
    return rules, problems


def _mark_at(rule, value):
    # The highest threshold of ``rule`` at or below ``value`` (0: none).
    _, step, at, _ = rule
    if step:
        return value // step * step
    return at if value >= at else 0


def _external(name, value):
    scale = SCALES.get(name)
    return value / scale if scale else value


class Counters:
    """Named monotonic counters on flash; see the module docstring for the layout."""

    def __init__(self, rules=(), directory=DIR, log=None, segment_bytes=SEGMENT_BYTES):
        self.rules = list(rules)
        self.log = log
        self.dir = directory
        self.segment_bytes = segment_bytes
        self.totals = {}
        self.marks = {}  # "counter:action" -> highest threshold already raised
        self.last_seq = 0
        self.acked_seq = 0
        self.gaps = 0  # event seqs missing on replay (flash damage); reported, never hidden
        self.dropped = 0  # undelivered events dropped because the filesystem was full
        self._n_archives = 0
        self._first = 0  # first event seq in the active journal (0: none)
        self._hdr = bytearray(_REC_LEN)
        self.section = {}  # the status section, updated in place by status()
        try:
            os.mkdir(directory)
        except OSError:
            pass  # exists: mkdir is the portable test
        self._journal = store.Journal(directory + "/log", segment_bytes)
        snap = self._journal.snapshot()
        if snap is not None:
            self._load_state(snap[1])
        base = self.last_seq
        for path, _, _ in self._archives():
            for rec in self._read(path):
                self._apply(rec)
        unfinished = self.last_seq > base  # a rollover was cut before its snapshot
        for rec in self._read(None):
            self._apply(rec)
            if rec[2] != _ACK and not self._first:
                self._first = rec[0]
        if unfinished:
            self._compact()
        for rule in self.rules:  # a new rule starts at the present, no back-dated events
            if self._key(rule) not in self.marks:
                self.marks[self._key(rule)] = _mark_at(rule, self.totals.get(rule[0], 0))
                unfinished = True
        if unfinished:
            self._compact()
        for rule in self.rules:  # crossings whose service event a cut kept from flash
            self._raise_services(rule[0], int(time.time()))
        self._drop_acked_archives()
        self.status()

    # -- the API the uplink and the usage detector use ----------------------------------------

    def count(self, name, delta, info=None):
        """Commit a use of ``delta`` (counter units; litres may be fractional); return its seq.

        Returns only once the event is on flash; raises store.StoreError if the flash fails
        (the caller keeps the event and tries again). Raises any service events it crosses.
        """
        d = int(round(delta * SCALES.get(name, 1)))
        if d <= 0:
            raise CounterError("%s: a use must add a positive amount, got %r" % (name, delta))
        now = int(time.time())
        seq = self._commit(_USE, name, d, self.totals.get(name, 0) + d, info, now)
        self._raise_services(name, now)
        return seq

    def adjust(self, name, value, reason, source):
        """Set counter ``name`` to ``value`` (a reset is value 0), with a reason; return the seq.

        The change is an audited "adjust" event (info "source: reason"). Service marks move to
        the new value without raising: the adjustment itself is what the service sees.
        """
        if not reason or not source:
            raise CounterError("%s: an adjustment needs a reason and a source" % name)
        v = int(round(value * SCALES.get(name, 1)))
        if v < 0 or v > _I32_MAX:
            raise CounterError("%s: %r is out of range" % (name, value))
        old = self.totals.get(name, 0)
        seq = self._commit(_ADJUST, name, v - old, v, "%s: %s" % (source, reason),
                           int(time.time()))
        return seq

    def acked(self, seq):
        """The uplink delivered every event up to ``seq``: persist it, drop what is delivered."""
        seq = min(seq, self.last_seq)
        if seq <= self.acked_seq:
            return
        self._append(_ACK, seq, 0, "", 0, 0, None)
        self.acked_seq = seq
        self._drop_acked_archives()

    def events_after(self, seq, limit):
        """Up to ``limit`` committed events with seq above ``seq``, oldest first."""
        out = []
        if seq >= self.last_seq or limit <= 0:
            return out
        paths = [path for path, _, last in self._archives() if last > seq]
        if self._first:
            paths.append(None)
        for path in paths:
            for rec in self._read(path):
                if rec[0] > seq and rec[2] != _ACK:
                    s, t, kind, delta, total, name, info = rec
                    k = "use" if kind == _USE else "service" if kind == _SERVICE else "adjust"
                    out.append((s, t, k, name, _external(name, delta),
                                _external(name, total), info))
                    if len(out) >= limit:
                        return out
        return out

    def snapshot(self):
        """Counter name -> value (litres as a float, the others as ints)."""
        return {name: _external(name, v) for name, v in self.totals.items()}

    def status(self):
        """The "counters" status section: values, event seqs, what waits for delivery."""
        s = self.section
        s["values"] = self.snapshot()
        s["seq"] = self.last_seq
        s["pending"] = self.last_seq - self.acked_seq
        s["archives"] = self._n_archives
        s["gaps"] = self.gaps
        s["dropped"] = self.dropped
        return s

    def close(self):
        self._journal.close()

    # -- flash ---------------------------------------------------------------------------

    def _commit(self, kind, name, delta, total, info, now):
        if not name or "\0" in name or len(name) > 16:
            raise CounterError("bad counter name %r" % (name,))
        if total > _I32_MAX:
            raise CounterError("%s: total out of range" % name)
        seq = self.last_seq + 1
        self._append(kind, seq, now, name, delta, total, info)
        self.last_seq = seq
        if not self._first:
            self._first = seq
        self.totals[name] = total
        if kind == _ADJUST:
            for rule in self.rules:
                if rule[0] == name:
                    self.marks[self._key(rule)] = _mark_at(rule, total)
        return seq

    def _append(self, kind, seq, now, name, delta, total, info):
        struct.pack_into(_REC, self._hdr, 0, seq, now, kind, delta, total)
        payload = bytes(self._hdr) + name.encode() + b"\0"
        if info:
            payload += info.encode()[:_INFO_MAX]
        if not self._journal.fits(len(payload)):
            self._rollover()
        self._journal.append(payload)

    def _rollover(self):
        if self._first and self.last_seq > self.acked_seq:
            # Undelivered events: keep the file as an archive (a rename copies nothing).
            self._journal.close()
            self._make_room()
            os.rename(self.dir + "/log", "%s/a%d-%d" % (self.dir, self._first, self.last_seq))
            self._n_archives += 1
        self._compact()

    def _compact(self):
        state = {"v": _STATE_VERSION, "seq": self.last_seq, "acked": self.acked_seq,
                 "t": self.totals, "m": self.marks}
        self._journal.compact(json.dumps(state).encode())
        self._first = 0

    def _make_room(self):
        # Weeks without delivery fill the filesystem with archives; the oldest one goes
        # (its events stay counted in the totals) rather than the counting stopping.
        try:
            st = os.statvfs(self.dir)
        except (OSError, AttributeError):
            return
        archives = self._archives()
        if st[3] >= _FREE_BLOCKS_MIN or not archives:
            return
        path, first, last = archives[0]
        os.remove(path)
        self.dropped += last - first + 1
        if self.log:
            self.log.error("counter", "filesystem full: dropped undelivered events %d-%d"
                           % (first, last))

    def _archives(self):
        # (path, first seq, last seq) of each archive, oldest first.
        out = []
        for name in os.listdir(self.dir):
            if name[0] == "a" and "-" in name and not name.endswith(".tmp"):
                first, last = name[1:].split("-")
                out.append(("%s/%s" % (self.dir, name), int(first), int(last)))
        out.sort(key=lambda a: a[1])
        return out

    def _drop_acked_archives(self):
        archives = self._archives()
        self._n_archives = len(archives)
        for path, _, last in archives:
            if last <= self.acked_seq:
                os.remove(path)
                self._n_archives -= 1

    def _read(self, path):
        # Records of an archive (or of the active journal when path is None), decoded.
        journal = self._journal if path is None else store.Journal(path, _I32_MAX)
        for _, payload in journal.records():
            seq, t, kind, delta, total = struct.unpack_from(_REC, payload, 0)
            end = payload.find(b"\0", _REC_LEN)
            name = payload[_REC_LEN:end].decode()
            info = payload[end + 1:].decode() if end + 1 < len(payload) else None
            yield seq, t, kind, delta, total, name, info
        if path is not None:
            journal.close()

    # -- state -----------------------------------------------------------------------------

    def _load_state(self, payload):
        try:
            state = json.loads(payload)
        except ValueError:
            raise store.StoreError("%s/log.snap: counter state is not JSON" % self.dir)
        if state.get("v") != _STATE_VERSION:
            raise store.StoreError("%s/log.snap: unknown counter state version %r"
                                   % (self.dir, state.get("v")))
        self.last_seq = state["seq"]
        self.acked_seq = state["acked"]
        self.totals = state["t"]
        self.marks = state["m"]

    def _apply(self, rec):
        seq, _, kind, delta, total, name, info = rec
        if kind == _ACK:
            self.acked_seq = max(self.acked_seq, seq)
            return
        if seq <= self.last_seq:
            return  # already in the snapshot: a cut compaction left it behind
        if seq != self.last_seq + 1:
            self.gaps += seq - self.last_seq - 1
            if self.log:
                self.log.error("counter", "events %d-%d missing on flash"
                               % (self.last_seq + 1, seq - 1))
        self.last_seq = seq
        if kind == _SERVICE:
            self.marks[name + ":" + (info or "")] = delta
            return
        self.totals[name] = total
        if kind == _ADJUST:
            for rule in self.rules:
                if rule[0] == name:
                    self.marks[self._key(rule)] = _mark_at(rule, total)

    def _key(self, rule):
        return rule[0] + ":" + rule[3]

    def _raise_services(self, name, now):
        total = self.totals.get(name, 0)
        for rule in self.rules:
            if rule[0] != name:
                continue
            key = self._key(rule)
            mark = self.marks.get(key, 0)
            step = rule[1] or rule[2]
            # Thresholds above the mark and at or below the total, one event each.
            t = (mark // step + 1) * step if rule[1] else (rule[2] if mark < rule[2] else 0)
            while t and t <= total:
                self._commit(_SERVICE, name, t, total, rule[3], now)
                self.marks[key] = t
                if self.log:
                    self.log.info("counter", "service: %s at %s %s" % (
                        rule[3], _external(name, t), name))
                t = t + step if rule[1] else 0
