"""Checks for app.counter and the sensor drivers that run unchanged under MicroPython and
CPython.

Each ``check_<name>`` runs in an empty working folder (tests/device/checkrun.py runs them).
The power-cut check cuts every EVERY-th flash operation of a simulated day in turn (1: every
one), inside this one process: the files are restored to the state before the operation,
the operation runs with the Cutter failing its n-th flash operation, and the counters are
reopened as the next boot would open them.
"""

import os

from app import counter, store
from app.counter import CounterError, Counters
from app.sensors import sht
from checkhelp import expect, raises
from flash_faults import Cutter, PowerCut

DIR = "cnt"
RULES = "brews/7:beans;litres@40:filter;litres/25:descale"
EVERY = 1
MIN_CUTS = 2000  # a day of counting has thousands of cut points


def clean():
    for name in os.listdir():
        if name == DIR:
            for f in os.listdir(DIR):
                os.remove(DIR + "/" + f)
            os.rmdir(DIR)
        else:
            os.remove(name)


def save():
    files = {}
    for name in os.listdir(DIR):
        with open(DIR + "/" + name, "rb") as f:
            files[name] = f.read()
    return files


def restore(files):
    for name in os.listdir(DIR):
        os.remove(DIR + "/" + name)
    for name in files:
        with open(DIR + "/" + name, "wb") as f:
            f.write(files[name])


def opened(segment=256):
    return Counters(counter.parse_rules(RULES)[0], directory=DIR, segment_bytes=segment)


class _Cutter(Cutter):
    # The counters also list their folder and ask for free space.
    def listdir(self, path):
        return os.listdir(path)

    def mkdir(self, path):
        self.tick()
        os.mkdir(path)

    def statvfs(self, path):
        return os.statvfs(path)


# --- a reference: what the counters must hold, computed without flash ---------------------


class Reference:
    def __init__(self):
        self.totals = {}
        self.services = []  # (counter, threshold) in the order they must be raised
        self.rules = counter.parse_rules(RULES)[0]
        self.marks = {}

    def apply(self, op):
        if op[0] == "ack":
            return
        kind, name, amount = op
        scaled = int(round(amount * counter.SCALES.get(name, 1)))
        old = self.totals.get(name, 0)
        new = old + scaled if kind == "use" else scaled
        self.totals[name] = new
        for rule in self.rules:
            if rule[0] != name:
                continue
            key = rule[0] + rule[3]
            if kind == "adjust":
                self.marks[key] = counter._mark_at(rule, new)
                continue
            mark = self.marks.get(key, 0)
            for t in _thresholds(rule, mark, new):
                self.services.append((name, t))
                self.marks[key] = t


def _thresholds(rule, mark, total):
    step, at = rule[1], rule[2]
    if step:
        return list(range((mark // step + 1) * step, total + 1, step))
    return [at] if mark < at <= total else []


def day_ops():
    """A day of use: brews, dispenses, the uplink's acks, one reset with a reason."""
    ops = []  # type: list
    for i in range(400):
        if i % 3 == 0:
            ops.append(("use", "litres", 0.25 + (i % 7) * 0.33))
        else:
            ops.append(("use", "brews", 1))
        if i % 9 == 8:
            ops.append(("ack",))
        if i == 250:
            ops.append(("adjust", "brews", 0))
    return ops


def run_op(c, op, delivered):
    if op[0] == "use":
        c.count(op[1], op[2])
    elif op[0] == "adjust":
        c.adjust(op[1], op[2], "grinder replaced", "tech:7")
    else:
        # The uplink: take what is pending, deliver it, acknowledge the newest seq.
        events = c.events_after(c.acked_seq, 1000)
        if events:
            delivered.extend(events)
            c.acked(events[-1][0])


def verify(c, ref_before, ref_after, delivered, where):
    totals = {name: v for name, v in c.totals.items()}
    state = None
    for ref in (ref_before, ref_after):
        if totals == ref.totals:
            state = ref
    expect(state is not None, "%s: totals %r, committed before %r, after %r"
           % (where, totals, ref_before.totals, ref_after.totals))
    pending = c.events_after(c.acked_seq, 100000)
    seqs = [e[0] for e in pending]
    want = list(range(c.acked_seq + 1, c.last_seq + 1))
    expect(seqs == want, "%s: pending seqs %r, want %r" % (where, seqs[:8], want[:8]))
    delivered_now = [e for e in delivered if e[0] <= c.acked_seq]
    everything = delivered_now + pending
    expect([e[0] for e in everything] == list(range(1, c.last_seq + 1)),
           "%s: event seqs are not 1..%d exactly once" % (where, c.last_seq))
    services = [(e[3], int(round(e[4] * counter.SCALES.get(e[3], 1))))
                for e in everything if e[2] == "service"]
    expect(services == state.services, "%s: service events %r, want %r"
           % (where, services[-3:], state.services[-3:]))


def copy_ref(ref):
    r = Reference()
    r.totals = dict(ref.totals)
    r.services = list(ref.services)
    r.marks = dict(ref.marks)
    return r


def check_power_cut_day():
    os.mkdir(DIR)
    ref = Reference()
    delivered = []
    cuts = 0
    tick = 0
    for i, op in enumerate(day_ops()):
        base = save()
        after = copy_ref(ref)
        after.apply(op)
        at = 1
        while True:
            restore(base)
            c = opened()
            tick += 1
            cutter = _Cutter(at if tick % EVERY == 0 else 0, PowerCut)
            store.os = counter.os = cutter
            store.open = cutter.open  # type: ignore[attr-defined]  # the check's fault-injection seam
            trial = list(delivered)
            try:
                run_op(c, op, trial)
                done = True
            except PowerCut:
                done = False
            finally:
                cutter.at = 0
                store.os = counter.os = os
                store.open = open  # type: ignore[attr-defined]  # the check's fault-injection seam
            if done:
                c.close()
                break
            cuts += 1
            c2 = opened()  # the next boot
            verify(c2, ref, after, trial, "op %d %r, cut at %d" % (i, op, at))
            c2.close()
            at += 1
        delivered = trial
        ref = after
        c = opened()
        verify(c, ref, ref, delivered, "op %d %r, uncut" % (i, op))
        c.close()
    expect(ref.totals["brews"] > 0 and len(ref.services) > 20, "the day crossed thresholds")
    print("CUTS", cuts)
    expect(cuts >= MIN_CUTS, "a day of counting has thousands of cut points: %d" % cuts)


def check_api_basics():
    c = opened(4096)
    expect(c.last_seq == 0 and c.events_after(0, 10) == [] and c.snapshot() == {}, "empty")
    expect(c.count("brews", 1, "30s") == 1 and c.count("litres", 0.25) == 2, "seqs from 1")
    ev = c.events_after(0, 10)
    expect(ev[0][0] == 1 and ev[0][2:] == ("use", "brews", 1, 1, "30s"), "use event %r" % (ev[0],))
    expect(ev[1][2:] == ("use", "litres", 0.25, 0.25, None), "litres event %r" % (ev[1],))
    expect(c.events_after(1, 10) == ev[1:] and c.events_after(0, 1) == ev[:1], "after, limit")
    for _ in range(6):
        c.count("brews", 1)
    svc = [e for e in c.events_after(0, 100) if e[2] == "service"]
    expect(len(svc) == 1 and svc[0][3:] == ("brews", 7, 7, "beans"), "service %r" % (svc,))
    msg = raises(CounterError, c.adjust, "brews", 0, "", "tech")
    expect("reason" in msg, "an adjustment without a reason is refused: " + msg)
    raises(CounterError, c.count, "brews", 0)
    seq = c.adjust("brews", 3, "miscounted", "console")
    e = c.events_after(seq - 1, 1)[0]
    expect(e[2:] == ("adjust", "brews", -4, 3, "console: miscounted"), "adjust %r" % (e,))
    c.acked(seq)
    c.close()
    c = opened(4096)
    expect(c.snapshot() == {"brews": 3, "litres": 0.25} and c.last_seq == seq, "reopened")
    expect(c.acked_seq == seq and c.events_after(seq, 10) == [], "ack persisted")
    c.close()


def check_rollover_keeps_undelivered():
    c = opened(256)
    for _ in range(100):
        c.count("brews", 1)
    names = os.listdir(DIR)
    expect(any(n.startswith("a") for n in names), "undelivered events archived: %r" % names)
    expect([e[0] for e in c.events_after(0, 1000)] == list(range(1, c.last_seq + 1)),
           "every undelivered event readable")
    c.acked(c.last_seq)
    expect(not any(n.startswith("a") for n in os.listdir(DIR)), "acked archives removed")
    c.close()
    c = opened(256)
    expect(c.snapshot()["brews"] == 100 and c.events_after(c.acked_seq, 10) == [], "reopened")
    c.close()


def check_rules_parse():
    rules, problems = counter.parse_rules("brews/200:reorder-beans; litres@1000:filter;x;a/0:b")
    expect(rules == [("brews", 200, 0, "reorder-beans"), ("litres", 0, 1000000, "filter")],
           "rules %r" % (rules,))
    expect(len(problems) == 2 and "'x'" in problems[0], "problems %r" % (problems,))


# --- sensor drivers over a fake I2C ------------------------------------------------------


class _NoWait:
    # CPython's time has no sleep_ms; the fake sensor answers at once anyway.
    @staticmethod
    def sleep_ms(ms):
        pass


sht.time = _NoWait  # type: ignore[attr-defined]  # the driver's clock, stood in for


class FakeI2C:
    def __init__(self, reply):
        self.reply = reply
        self.written = []

    def writeto(self, addr, buf):
        self.written.append((addr, bytes(buf)))

    def readfrom_into(self, addr, buf):
        if self.reply is None:
            raise OSError(19)
        buf[:] = self.reply


def check_sht_crc():
    # Sensirion's worked example: CRC-8 of 0xBEEF is 0x92.
    expect(sht.crc8(b"\xbe\xef") == 0x92, "crc8(BEEF)")
    i2c = FakeI2C(b"\x66\x66\x93\x80\x00\xa2")  # raw T 0x6666, RH 0x8000
    s = sht.Sht(i2c, 0x44, "sht4x")
    v = s.read()
    expect(i2c.written == [(0x44, b"\xfd")], "SHT4x measure command %r" % i2c.written)
    expect(v == {"t": 25.0, "rh": 56.5} and s.fault is None, "decoded %r" % (v,))
    s3 = sht.Sht(FakeI2C(b"\x66\x66\x93\x80\x00\xa2"), 0x45, "sht3x")
    expect(s3.read() == {"t": 25.0, "rh": 50.0}, "SHT3x humidity scale")
    expect(s3.i2c.written == [(0x45, b"\x24\x00")], "SHT3x single-shot command")


def check_sht_faults():
    s = sht.Sht(FakeI2C(b"\x66\x66\x93\x80\x00\xa3"), 0x44)
    expect(s.read() is None and s.fault == "crc" and s.errors == 1, "bad CRC reported")
    expect(s.status()["fault"] == "crc", "in status")
    s.i2c.reply = None
    expect(s.read() is None and s.fault == "missing" and s.errors == 2, "NACK reported")
    s.i2c.reply = b"\x66\x66\x93\x80\x00\xa2"
    expect(s.read() is not None and s.fault is None, "recovers")
    for _ in range(sht.Sht.stuck_reads):
        s.read()
    expect(s.fault == "stuck", "the same reading over and over is a stuck sensor")


class FakeAdc:
    def __init__(self, uv):
        self.uv = uv

    def read_uv(self):
        self.uv += 1 if self.uv % 2 == 0 else -1  # a live input jitters
        return self.uv


def check_analog_sensors():
    from app.sensors.analog import Current, Supply

    c = Current(FakeAdc(1650000 + 264000 * 3), 0.264, 1.65)
    expect(abs(c.read()["a"] - 3.0) < 0.01, "3 A")
    c.adc.uv = 0
    expect(c.read() is None and c.fault == "disconnected", "a wire off reads 0 V")
    s = Supply(FakeAdc(1850000), 2.0)
    expect(abs(s.read()["v"] - 3.7) < 0.01 and s.fault is None, "3.7 V battery")
    s.adc.uv = 1000000
    expect(s.read() is None and s.fault == "range", "2 V supply is out of range")


def run_check(fn):
    """Each check starts in an empty folder (see tests/device/checkrun.py)."""
    clean()
    fn()
