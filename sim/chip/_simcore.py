# Core of the virtual device, shared by the machine/esp32/network/time/select shims.
#
# Runs inside the device process under both interpreters (MicroPython unix port and CPython),
# so it is written in the MicroPython subset. It owns the three things every shim needs:
#   - the virtual clock (advanced only when the firmware is idle, so a day runs in seconds; the
#     models on the host are asked for their work before it passes, see _simlink),
#   - the flash image (partitions of one file, with power cuts at any write),
#   - the link to the host runner (a JSON settings file in, "@sim {json}" lines out on stderr).
import sys
import json
import _simflash
import _simlink
from _simexit import (  # noqa: F401 - the chip's modules raise these through the core
    DeepSleep,
    HostGone,
    PowerCut,
    Reset,
    SimExit,
    SimFailure,
    SoftReset,
    SpanEnd,
    WatchdogReset,
)

IS_MICROPYTHON = sys.implementation.name == "micropython"


def _builtin(name):
    # On the MicroPython unix port a .py on MICROPYPATH overrides a built-in module of the same
    # name; importing with sys.path emptied reaches the built-in one.
    saved = sys.path[:]
    sys.path.clear()
    try:
        return __import__(name)
    finally:
        sys.path.extend(saved)


_btime = _builtin("time")
_bselect = _builtin("select")
_bos = _builtin("os")

# Reset causes, numbered as the ESP32 port's machine module numbers them.
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_US_PER_MS = 1000
_US_PER_S = 1000000
_CONSOLE_SLICE_MS = 1000  # longest real wait for console input between clock updates
# On the MicroPython unix port the built-in asyncio queue stamps "run now" entries with the
# real monotonic clock. Virtual ticks start far above any real value, so such entries always
# sort as already due and the queue's order stays right.
_MP_TICKS_BASE = 1 << 41
# The ESP32 port's ticks_ms wraps at 2**30; CPython follows the device.
_ESP32_TICKS_PERIOD = 1 << 30


class Rng:
    # xorshift64*: the same sequence under both interpreters for a given seed.
    _MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.state = (seed * 0x9E3779B97F4A7C15 + 1) & self._MASK or 1

    def next(self):
        x = self.state
        x ^= (x >> 12)
        x ^= (x << 25) & self._MASK
        x ^= (x >> 27)
        self.state = x
        return (x * 0x2545F4914F6CDD1D) & self._MASK

    def below(self, n):
        return self.next() % n if n > 0 else 0

    def bytes(self, n):
        out = bytearray(n)
        for i in range(n):
            out[i] = self.next() & 0xFF
        return bytes(out)


# ---- settings from the host -------------------------------------------------------------

settings = {}
rng = Rng(0)
_cut_rng = Rng(0)


def load_settings(path):
    global settings, rng, _cut_rng, now_us, boot_us, span_end_us, speed
    with open(path) as f:
        settings = json.load(f)
    rng = Rng(settings.get("seed", 0) * 1000003 + settings.get("boot", 0))
    _cut_rng = Rng(settings.get("seed", 0) * 7919 + settings.get("boot", 0) + 1)
    now_us = settings["virtual_us"]
    boot_us = now_us
    span_end_us = settings["span_end_us"]
    speed = settings.get("speed")
    # `random` is the interpreter's own; seeding it here makes jitter and backoff repeatable.
    _builtin("random").seed(settings.get("seed", 0) * 1000003 + settings.get("boot", 0))
    _simflash.start(settings, rng, _cut_rng)
    _stdin_poll.register(sys.stdin, _bselect.POLLIN)
    _open_interrupts()
    _simlink.connect(settings["link"], settings.get("seed", 0) * 1000003 + settings.get("boot", 0),
                     settings["clock"])
    _simlink.hello(now_us, settings.get("reset_cause", PWRON_RESET), _advance_to)
    return settings


# ---- host link -------------------------------------------------------------------------

def report(event, **fields):
    fields["event"] = event
    fields["virtual_us"] = now_us
    sys.stderr.write("@sim " + json.dumps(fields) + "\n")


# ---- virtual clock ---------------------------------------------------------------------

now_us = 0
boot_us = 0
span_end_us = 0
speed = None  # None: as fast as possible; a number: virtual seconds per wall second
heap_peak = 0  # most heap the firmware held at once, above what the sim itself holds
heap_baseline = 0
sim_heap_bytes = 0  # what the sim's own modules hold in the interpreter's heap (MicroPython)
# The rest of the sim's side of the heap, held so that the firmware cannot take it; let go when
# the boot ends, for the exit report (see _simrun.report_exit).
sim_reserve = None
_events = []  # (due_us, seq, callback), kept sorted; the sim world schedules through `at`
_event_seq = 0
_wdt_timeout_us = 0
_wdt_deadline_us = -1
console_attached = False
# Pollers for console input, made at import: the idle path checks them at every step and must
# not allocate on the firmware's heap to do so. _stdin_poll: the console's bytes (stdin);
# _interrupt_poll: the Ctrl-C notes alone; _console_poll: both.
_stdin_poll = _bselect.poll()
_interrupt_poll = _bselect.poll()
_console_poll = _bselect.poll()
console_pending = bytearray()  # console bytes the REPL read and has not used yet
# Ctrl-C, as the ESP32's UART driver handles it: the driver sees each byte as it arrives and a
# 0x03 interrupts the running program, while every other byte waits in the buffer behind
# sys.stdin for whoever reads it (the REPL, or the application's console task). Here the host
# (sim/console.py) writes one note to a pipe of its own per 0x03 before the bytes themselves
# go to stdin, so the device learns of a Ctrl-C without reading stdin, and stdin stays the
# application's to read. A Ctrl-C that interrupted the program is skipped when the REPL reads
# on (_skip_ctrl_c); one the REPL reads in its turn takes its note with it.
_interrupts = None  # the notes' pipe: a file under MicroPython, a descriptor under CPython
_skip_ctrl_c = 0
# Readers of sys.stdin in the application (the select shim's and the asyncio shim's
# registrations): only while there is one does console input end an idle wait early.
stdin_readers = 0


def ticks_ms():
    elapsed_ms = (now_us - boot_us) // _US_PER_MS
    if IS_MICROPYTHON:
        return _btime.ticks_add(_MP_TICKS_BASE, elapsed_ms)
    return elapsed_ms & (_ESP32_TICKS_PERIOD - 1)


def ticks_us():
    elapsed_us = now_us - boot_us
    if IS_MICROPYTHON:
        return _btime.ticks_add(_MP_TICKS_BASE * _US_PER_MS, elapsed_us)
    return elapsed_us & (_ESP32_TICKS_PERIOD - 1)


def _real_ms():
    # Wall-clock milliseconds, for pacing against real time.
    if IS_MICROPYTHON:
        return _btime.ticks_ms()
    return int(_btime.monotonic() * 1000)


def _real_since(start_ms):
    if IS_MICROPYTHON:
        return _btime.ticks_diff(_btime.ticks_ms(), start_ms)
    return _real_ms() - start_ms


def epoch_seconds():
    return settings.get("epoch", 0) + now_us // _US_PER_S


def at(due_us, callback):
    # Schedule `callback()` at virtual time `due_us`; the sim world (sensor physics, modem
    # replies) uses this so that its events interleave with the firmware's sleeps.
    global _event_seq
    _event_seq += 1
    entry = (due_us, _event_seq, callback)
    i = len(_events)
    while i > 0 and _events[i - 1][0] > due_us:
        i -= 1
    _events.insert(i, entry)


def _fire_due_events():
    while _events and _events[0][0] <= now_us:
        _events.pop(0)[2]()


def wdt_start(timeout_ms):
    global _wdt_timeout_us
    _wdt_timeout_us = timeout_ms * _US_PER_MS
    wdt_feed()


def wdt_feed():
    global _wdt_deadline_us
    if _wdt_timeout_us:
        _wdt_deadline_us = now_us + _wdt_timeout_us


# A collection costs more than all else the sim does in a step: at most one a virtual minute.
_HEAP_SAMPLE_US = 60 * _US_PER_S
_next_heap_sample = 0


def _sample_heap():
    global heap_peak, _next_heap_sample
    if now_us < _next_heap_sample:
        return
    _next_heap_sample = now_us + _HEAP_SAMPLE_US
    # The figure is live data, not garbage awaiting collection; idle points are where the
    # firmware's steady state shows. What is allocated bounds what is live, so a collection
    # is needed only when the allocated bytes pass the peak so far: the firmware's own
    # collections stay as they would be on the chip, and a day costs few of them.
    if IS_MICROPYTHON:
        import gc
        if gc.mem_alloc() - heap_baseline <= heap_peak:
            return
        gc.collect()
        used = gc.mem_alloc() - heap_baseline
        if used > heap_peak:
            heap_peak = used


_TICK_REPORT_MS = 1000  # a paced device tells the host its clock once a wall second
_last_tick_report = 0


def _report_progress():
    # A paced (console) device can be stopped from the host at any moment; it reports its
    # clock and heap peak as it goes so the host's summary is right when it does.
    global _last_tick_report
    if _real_since(_last_tick_report) >= _TICK_REPORT_MS:
        _last_tick_report = _real_ms()
        report("tick", heap_peak=heap_peak, flash_writes=_simflash.writes)


def _advance_to(target_us):
    # Moves the clock forward, firing watchdog and span end on the way.
    global now_us
    if _wdt_deadline_us >= 0 and target_us >= _wdt_deadline_us:
        now_us = max(now_us, _wdt_deadline_us)
        raise WatchdogReset()
    if target_us >= span_end_us:
        now_us = span_end_us
        raise SpanEnd()
    if target_us > now_us:
        now_us = target_us


def _console_wait(wall_ms, for_repl=False):
    # Waits up to wall_ms real milliseconds for console input; returns True when some arrived.
    # A Ctrl-C always counts; other bytes only when someone reads them (the REPL, or a task
    # of the application awaiting sys.stdin): unread ones must not cut every wait short.
    if not console_attached:
        return False
    wall_ms = max(0, int(wall_ms))
    if for_repl or stdin_readers:
        poller = _console_poll if _interrupts is not None else _stdin_poll
    elif _interrupts is not None:
        poller = _interrupt_poll
    else:
        _btime.sleep_ms(wall_ms) if IS_MICROPYTHON else _btime.sleep(wall_ms / 1000)
        return False
    return bool(poller.poll(wall_ms))


def idle(timeout_us):
    # The firmware has nothing to do for timeout_us, whole microseconds (negative: until
    # something happens). Integers only: a float here would be an allocation at every step.
    # Advances virtual time to the earliest of the timeout, the next scheduled event and the
    # models' next work, waiting in real time only when the clock is paced (a console is
    # attached); the host holds the clock while a model awaits a reply from a real server.
    _sample_heap()
    target = _limit(span_end_us if timeout_us < 0 else now_us + timeout_us)
    if speed:
        # Paced: wait in real time, a slice at most, so the host hears progress and console
        # input is seen as soon as it arrives.
        target = _simlink.idle(now_us, target, False, _simlink.stay)
        start = _real_ms()
        wall_ms = (target - now_us) / _US_PER_MS / speed
        clipped = wall_ms > _CONSOLE_SLICE_MS
        if clipped:
            wall_ms = _CONSOLE_SLICE_MS
        if console_attached:
            arrived = _console_wait(wall_ms)
        else:
            _btime.sleep(wall_ms / 1000)
            arrived = False
        if arrived:
            target = min(target, now_us + int(_real_since(start) * speed * _US_PER_MS))
        elif clipped:
            target = now_us + int(wall_ms * speed * _US_PER_MS)
        _report_progress()
    elif console_attached and _console_wait(0):
        target = now_us
    _simlink.idle(now_us, target, True, _advance_to)
    _fire_due_events()


def _limit(target):
    # The clock stops at the device's own next event, its watchdog and the span's end.
    if _events and _events[0][0] < target:
        target = _events[0][0]
    if 0 <= _wdt_deadline_us < target:
        target = _wdt_deadline_us
    if target > span_end_us:
        target = span_end_us
    return target


def wait_console():
    # The REPL waits for a person (or mpremote): real time passes, at the pace asked for, until
    # input arrives. Without a console nobody can type, so the device idles to the span end.
    if not console_attached:
        idle(-1)
        return
    pace = speed or 1
    limit = _simlink.idle(now_us, _limit(span_end_us), False, _simlink.stay)
    start = _real_ms()
    _console_wait(min((limit - now_us) / _US_PER_MS / pace, _CONSOLE_SLICE_MS), True)
    waited_ms = _real_since(start)
    _report_progress()
    _simlink.idle(now_us, min(limit, now_us + int(waited_ms * pace * _US_PER_MS)), True,
                  _advance_to)
    _fire_due_events()


_ready_callbacks = {}  # id(peripheral) -> callbacks waiting for it to become ready


def on_ready(obj, callback):
    _ready_callbacks.setdefault(id(obj), []).append(callback)


def notify_ready(obj):
    # A virtual peripheral became ready (bytes arrived): wake whoever waits on it.
    for callback in _ready_callbacks.pop(id(obj), ()):
        callback()


def sleep_us(us):
    # A blocking sleep in the firmware: no other task runs, time still passes.
    end = now_us + us
    while now_us < end:
        idle(end - now_us)


# ---- console ----------------------------------------------------------------------------

def _open_interrupts():
    global _interrupts
    fd = _bos.getenv("MUSKET_SIM_INTERRUPT_FD")
    if not fd:
        return
    # Opened while the host's filesystem is still the root (the littlefs partition replaces
    # it before the firmware runs).
    _interrupts = open("/dev/fd/" + fd, "rb") if IS_MICROPYTHON else int(fd)
    _interrupt_poll.register(_interrupts, _bselect.POLLIN)
    _console_poll.register(_interrupts, _bselect.POLLIN)
    _console_poll.register(sys.stdin, _bselect.POLLIN)


def _take_interrupt_note():
    # Blocks only where a note is known to wait: it is written before its 0x03.
    if IS_MICROPYTHON:
        _interrupts.read(1)
    else:
        _bos.read(_interrupts, 1)


def is_console(obj):
    # Whether a stream the firmware polls is the console (sys.stdin or its binary side).
    return obj is sys.stdin or obj is getattr(sys.stdin, "buffer", None)


def console_ready():
    # Whether a byte waits on the console for the application.
    return console_attached and bool(_stdin_poll.poll(0))


def console_read_available():
    # Reads whatever console bytes are waiting, without blocking (the REPL's reads). A 0x03
    # among them either was the Ctrl-C that interrupted the program (then it and what came
    # before it are dropped, as the interrupted program would have had them) or is the REPL's
    # to act on (then its note goes with it).
    global _skip_ctrl_c
    if not console_attached:
        return b""
    out = bytearray()
    while _stdin_poll.poll(0):
        if IS_MICROPYTHON:
            chunk = sys.stdin.buffer.read(1)
        else:
            chunk = _bos.read(0, 4096)
        if not chunk:
            # The console's other end closed: the host runner is gone, so is the power.
            raise HostGone()
        for c in chunk:
            if c == 0x03 and _interrupts is not None:
                if _skip_ctrl_c:
                    _skip_ctrl_c -= 1
                    out = bytearray()
                    continue
                _take_interrupt_note()
            out.append(c)
    return bytes(out)


def console_write(data):
    if IS_MICROPYTHON:
        sys.stdout.buffer.write(data)
    else:
        sys.stdout.flush()
        _bos.write(1, data)


def check_interrupt():
    # Ctrl-C on the console interrupts the running program, as the ESP32 UART driver does.
    global _skip_ctrl_c
    if _interrupts is not None and _interrupt_poll.poll(0):
        _take_interrupt_note()
        _skip_ctrl_c += 1
        raise KeyboardInterrupt()
