# A bounded in-RAM log: the last entries stay readable from the console and telemetry after
# the fact, with fixed memory use. Entries at or above the console level are also printed.
#
# The ring is one bytearray allocated at start, so the log's heap use is the same after a week
# as after a minute and never fragments the heap. Entries are stored back to back, each
#   length u8 (of the whole record) | uptime_ms i32 | level u8 | tag "\0" message (UTF-8)
# and the oldest make way for the newest. The ring has room for `capacity` entries of a
# typical length (a status line is about 60 bytes); it keeps at most `capacity`, fewer while
# long ones (up to _MESSAGE_MAX characters) fill it. A zero length byte marks where the
# newest wrapped around to the start.
import struct
import time

from micropython import const

DEBUG = const(10)
INFO = const(20)
WARNING = const(30)
ERROR = const(40)

_NAMES = const("debug info warning error")  # level names, in level order
_LETTERS = const("DIWE")
_DEFAULT_CAPACITY = const(32)
_MESSAGE_MAX = const(96)  # longer messages are cut: the ring's size in heap stays bounded
_HEAD = const("<BiB")
_HEAD_SIZE = const(6)
_TEXT_MAX = const(104)  # a tag of up to 7 and a message of _MESSAGE_MAX ASCII characters
_TYPICAL = const(64)  # bytes of ring per entry
_RECORD_MAX = const(110)  # _HEAD_SIZE + _TEXT_MAX


class Log:
    def __init__(self, capacity=_DEFAULT_CAPACITY, level=INFO, echo=True):
        self._ring = bytearray(max(capacity * _TYPICAL, _RECORD_MAX))
        self.capacity = capacity
        self._head = 0  # offset of the oldest entry
        self._tail = 0  # offset where the next entry goes
        self._count = 0
        self.level = level
        self.echo = echo
        self.errors = 0
        self.warnings = 0
        self.dropped = 0  # entries lost to a full heap
        self._t0 = time.ticks_ms()

    def configure(self, key, name):
        # log_level (the log's one setting, at boot and from a config command: app.config
        # names the log its owner). An unknown name leaves INFO.
        names = _NAMES.split()
        self.level = (names.index(name) + 1) * 10 if name in names else INFO

    def _add(self, level, tag, message):
        if level >= ERROR:
            self.errors += 1
        elif level >= WARNING:
            self.warnings += 1
        if level < self.level:
            return
        uptime_ms = time.ticks_diff(time.ticks_ms(), self._t0)
        try:
            message = message[:_MESSAGE_MAX]
            tag_b = tag.encode()
            message_b = message.encode()
            line = format_entry((uptime_ms, level, tag, message)) if self.echo else None
        except MemoryError:
            # Logging must not be what fails when the heap runs short.
            self.dropped += 1
            return
        ring = self._ring
        t = min(len(tag_b), _TEXT_MAX - 1)
        m = min(len(message_b), _TEXT_MAX - 1 - t)
        n = _HEAD_SIZE + t + 1 + m
        if self._count == self.capacity:
            self._drop()
        at = self._room(n)
        struct.pack_into(_HEAD, ring, at, n, uptime_ms, level)
        at += _HEAD_SIZE
        ring[at:at + t] = tag_b[:t]
        ring[at + t] = 0
        ring[at + t + 1:at + t + 1 + m] = message_b[:m]
        self._tail = at + t + 1 + m
        self._count += 1
        if line is not None:
            print(line)

    def _room(self, n):
        # Offset where an n-byte entry goes, dropping the oldest entries until it fits.
        ring = self._ring
        size = len(ring)
        while self._count:
            h, t = self._head, self._tail
            if h >= size or not ring[h]:  # the oldest entry is where the ring wrapped
                h = self._head = 0
            if t > h:  # entries fill [h, t)
                if t + n <= size:
                    return t
                if n <= h:  # wrap: the rest of the ring after t is unused
                    if t < size:
                        ring[t] = 0
                    return 0
            elif t + n <= h:  # entries fill [h, end) and [0, t)
                return t
            self._drop()
        return 0

    def _drop(self):
        # Forgets the oldest entry.
        ring = self._ring
        h = self._head
        if h >= len(ring) or not ring[h]:
            h = 0
        self._head = h + ring[h]
        self._count -= 1
        if not self._count:
            self._head = self._tail = 0

    def debug(self, tag, message):
        self._add(DEBUG, tag, message)

    def info(self, tag, message):
        self._add(INFO, tag, message)

    def warning(self, tag, message):
        self._add(WARNING, tag, message)

    def error(self, tag, message):
        self._add(ERROR, tag, message)

    def exception(self, tag, message, exc):
        self._add(ERROR, tag, "%s: %s: %r" % (message, type(exc).__name__, exc.args))

    def entries(self):
        # Oldest first, as (uptime_ms, level, tag, message).
        out = []
        ring = self._ring
        at = self._head
        for _ in range(self._count):
            if at >= len(ring) or not ring[at]:
                at = 0
            size, uptime_ms, level = struct.unpack_from(_HEAD, ring, at)
            raw = bytes(ring[at + _HEAD_SIZE:at + size])
            at += size
            while True:
                # A message cut inside a multi-byte character loses that character.
                try:
                    text = raw.decode()
                    break
                except UnicodeError:
                    raw = raw[:-1]
            tag, _, message = text.partition("\0")
            out.append((uptime_ms, level, tag, message))
        return out

    def __len__(self):
        return self._count


def format_entry(entry):
    uptime_ms, level, tag, message = entry
    return "[%7d.%03d] %s %s: %s" % (uptime_ms // 1000, uptime_ms % 1000,
                                     _LETTERS[level // 10 - 1], tag, message)
