# A bounded in-RAM log: the last entries stay readable from the console and telemetry after
# the fact, with fixed memory use. Entries at or above the console level are also printed.
import time

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


DEBUG = const(10)
INFO = const(20)
WARNING = const(30)
ERROR = const(40)

LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}
_LETTER = {DEBUG: "D", INFO: "I", WARNING: "W", ERROR: "E"}
_DEFAULT_CAPACITY = const(32)
_MESSAGE_MAX = const(96)  # longer messages are cut: the ring's size in heap stays bounded


class Log:
    def __init__(self, capacity=_DEFAULT_CAPACITY, level=INFO, echo=True):
        # Slots are allocated once; writing overwrites the oldest.
        self._entries = [None] * capacity
        self._next = 0
        self._count = 0
        self.level = level
        self.echo = echo
        self.errors = 0
        self.warnings = 0
        self.dropped = 0  # entries lost to a full heap
        self._t0 = time.ticks_ms()

    def set_level(self, name):
        self.level = LEVELS.get(name, INFO)

    def _add(self, level, tag, message):
        if level >= ERROR:
            self.errors += 1
        elif level >= WARNING:
            self.warnings += 1
        if level < self.level:
            return
        uptime_ms = time.ticks_diff(time.ticks_ms(), self._t0)
        try:
            entry = (uptime_ms, level, tag, message[:_MESSAGE_MAX])
            line = format_entry(entry) if self.echo else None
        except MemoryError:
            # Logging must not be what fails when the heap runs short.
            self.dropped += 1
            return
        self._entries[self._next] = entry
        self._next = (self._next + 1) % len(self._entries)
        if self._count < len(self._entries):
            self._count += 1
        if line is not None:
            print(line)

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
        # Oldest first.
        n = len(self._entries)
        start = (self._next - self._count) % n
        return [self._entries[(start + i) % n] for i in range(self._count)]

    def __len__(self):
        return self._count


def format_entry(entry):
    uptime_ms, level, tag, message = entry
    return "[%7d.%03d] %s %s: %s" % (uptime_ms // 1000, uptime_ms % 1000, _LETTER[level], tag,
                                     message)
