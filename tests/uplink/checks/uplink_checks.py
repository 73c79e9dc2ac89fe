# The uplink service over a fake transport (an in-memory broker behind a fake connection
# manager) and the readings queue, on a virtual device under both interpreters: commands on a
# foreign topic are refused, command replies survive a cut link and a reboot, a repeated
# command does not run again, a config change reaches the part that owns the key at once or
# is reported as applying after a reboot, and a full readings queue drops readings, never
# events. (The uplink's sessions short of heap: session_memory_checks.py.)
import asyncio
import json
import os
import struct
import time

from app import config as config_mod
from app import log as log_mod
from app import parts, store
from app.counter import Counters
from app.uplink.codec import encode, reading_record
from app.uplink.queue import ReadingQueue
from app.uplink.service import Uplink


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return out


def publish(topic, payload, pid, dup=False):
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + struct.pack("!H", pid) + payload
    return bytes([0x32 | (0x08 if dup else 0)]) + varint(len(body)) + body


class Broker:
    # The broker's side of one connection, in memory: answers as Mosquitto would; `cut_on`
    # names a topic whose PUBLISH from the device ends the connection before its PUBACK.
    def __init__(self, commands=(), cut_on=None):
        self.commands = commands  # PUBLISH packets sent to the device after the CONNACK
        self.cut_on = cut_on
        self.out = bytearray()
        self.inbuf = bytearray()
        self.got = []  # (type, flags, topic, pid, payload) of each packet from the device
        self.closed = False

    async def write(self, data):
        self.inbuf.extend(data)
        self._parse()
        return len(data)

    async def read_into(self, buf):
        while not self.out:
            if self.closed:
                return 0
            await asyncio.sleep_ms(5)
        n = min(len(buf), len(self.out))
        buf[:n] = self.out[:n]
        self.out = self.out[n:]
        return n

    async def close(self):
        self.closed = True

    def _parse(self):
        while len(self.inbuf) >= 2:
            size = 0
            shift = 0
            pos = 1
            while True:
                if pos >= len(self.inbuf):
                    return
                b = self.inbuf[pos]
                pos += 1
                size |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if len(self.inbuf) < pos + size:
                return
            kind = self.inbuf[0]
            body = bytes(self.inbuf[pos:pos + size])
            self.inbuf = self.inbuf[pos + size:]
            self._packet(kind, body)

    def _packet(self, kind, body):
        t = kind & 0xF0
        if t == 0x30:
            n = struct.unpack_from("!H", body, 0)[0]
            topic = body[2:2 + n].decode()
            qos = (kind >> 1) & 3
            pid = struct.unpack_from("!H", body, 2 + n)[0] if qos else 0
            self.got.append((t, kind & 0x0F, topic, pid, body[2 + n + (2 if qos else 0):]))
            if topic == self.cut_on:
                self.closed = True
                self.out = bytearray()
            elif qos:
                self.out.extend(b"\x40\x02" + struct.pack("!H", pid))
            return
        pid = struct.unpack_from("!H", body, 0)[0] if len(body) >= 2 else 0
        self.got.append((t, kind & 0x0F, None, pid, None))
        if t == 0x10:
            self.out.extend(b"\x20\x02\x01\x00")  # session present: no SUBSCRIBE needed
            for p in self.commands:
                self.out.extend(p)
        elif t == 0x80:
            self.out.extend(b"\x90\x03" + struct.pack("!H", pid) + b"\x01")
        elif t == 0xC0:
            self.out.extend(b"\xd0\x00")
        elif t == 0xE0:
            self.closed = True

    def replies(self):
        return [(flags, pid, json.loads(payload)) for t, flags, topic, pid, payload in self.got
                if t == 0x30 and topic == "d/dev-a/r"]

    def pubacks(self):
        return [pid for t, _, _, pid, _ in self.got if t == 0x40]


class Manager:
    # The modem's connection manager as the uplink sees it: each socket is the next broker.
    def __init__(self, brokers):
        self.brokers = list(brokers)

    async def wait_connected(self):
        await asyncio.sleep_ms(0)

    async def open_socket(self, host, port):
        if not self.brokers:
            raise OSError("no more brokers in this check")
        return self.brokers.pop(0)


class FakeCounters:
    # Stands in for app.counter.Counters where only adjust() matters: it counts the runs.
    last_seq = 0
    acked_seq = 0

    def __init__(self):
        self.adjusts = []

    def adjust(self, name, value, reason, source):
        self.adjusts.append((name, value, reason, source))
        return len(self.adjusts)

    def acked(self, seq):
        pass

    def events_after(self, seq, limit):
        return []

    def snapshot(self):
        return {}


class Device:
    # The parts an uplink is built from, registered as app.main registers them (a command
    # finds the counters there).
    def __init__(self, counters, brokers, sensors=None):
        self.log = log_mod.Log(capacity=24, echo=False)
        settings = dict(config_mod.DEFAULTS)
        settings.update({"device_id": "dev-a", "mqtt_host": "127.0.0.1", "mqtt_port": 1883,
                         "mqtt_tls": 0})
        parts.clear()
        parts["log"] = self.log
        parts["counters"] = counters
        self.queue = parts["readings"] = ReadingQueue(sensors, 900, self.log)
        self.uplink = parts["uplink"] = Uplink(Manager(brokers), counters, self.queue, settings,
                                               self.log)

    def logged(self, text):
        return [m for _, _, _, m in self.log.entries() if text in m]


class Sensors:
    def readings(self):
        return {"t": 21.5}


def clean():
    for path in ("/uplink.json", "/uplink.cmd", "/uplink.q", "/uplink.q.snap", "/uplink.q.ack",
                 "/tq", "/tq.snap", "/tq.ack", "/config.json"):
        try:
            os.remove(path)
        except OSError:
            pass


async def run_until(uplink, done, limit_s=120):
    # Runs the uplink task until done() or limit_s of (virtual) time, then stops it.
    task = asyncio.create_task(uplink.run())
    start = time.ticks_ms()
    while not done() and time.ticks_diff(time.ticks_ms(), start) < limit_s * 1000:
        await asyncio.sleep_ms(20)
    await asyncio.sleep_ms(200)  # the session loop settles what was acknowledged
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    if uplink.client is not None:
        await uplink.client.close()
    return done()


def record():
    return store.read_json("/uplink.cmd", [])


def waiting(cid):
    # The reply's waiting flag in the command record (None: no such id).
    for entry in record():
        if entry[0] == cid:
            return entry[3]
    return None


def counter_cmd(cid, value):
    return b'{"id": "%s", "op": "counter", "name": "brews", "value": %d, "reason": "fix"}' % (
        cid.encode(), value)


async def check_authorised_by_topic():
    clean()
    counters = FakeCounters()
    broker = Broker([publish("d/dev-b/c", counter_cmd("x1", 7), 1),
                     publish("d/dev-a/c/x", counter_cmd("x3", 8), 2),
                     publish("d/dev-a/c", counter_cmd("x2", 3), 3)])
    app = Device(counters, [broker])
    uplink = app.uplink
    await run_until(uplink, lambda: len(broker.replies()) == 3 and len(broker.pubacks()) >= 3)
    replies = [r for _, _, r in broker.replies()]
    refused = {"id": None, "ok": False, "error": "not authorised: commands come on d/dev-a/c"}
    ok = (replies[:2] == [refused, refused]
          and replies[2] == {"id": "x2", "ok": True, "result": {"seq": 1}}
          and counters.adjusts == [("brews", 3, "fix", "cmd:x2")]
          and sorted(broker.pubacks()) == [1, 2, 3]
          and len(app.logged("refused: not authorised")) == 2)
    if not ok:
        print("replies", replies, counters.adjusts, broker.pubacks())
    return ok


async def check_reply_survives_a_cut_link():
    clean()
    counters = FakeCounters()
    first = Broker([publish("d/dev-a/c", counter_cmd("c1", 5), 1)], cut_on="d/dev-a/r")
    second = Broker()
    uplink = Device(counters, [first, second]).uplink
    await run_until(uplink, lambda: second.replies() and waiting("c1") == 0)
    (f1, pid1, r1), = first.replies()
    (f2, pid2, r2), = second.replies()
    want = {"id": "c1", "ok": True, "result": {"seq": 1}}
    ok = (r1 == want and r2 == want and pid2 == pid1 and f1 & 0x08 == 0 and f2 & 0x08
          and len(counters.adjusts) == 1 and waiting("c1") == 0
          and uplink.status["connects"] == 2)
    if not ok:
        print("cut link", first.got, second.got, record(), counters.adjusts)
    return ok


async def check_a_reply_let_go_before_its_puback_goes_once():
    # A burst: stored replies were sent, then left RAM (let_go) before their PUBACKs. A late
    # PUBACK marks its reply delivered, no let-go reply is loaded from flash and sent again
    # while the session lasts, and one never acknowledged goes again in the next session.
    clean()
    from app.uplink.commands import Commands
    from app.uplink.replies import Replies, reply_bytes

    log = log_mod.Log(capacity=8, echo=False)
    parts.clear()
    parts["log"] = log
    parts["counters"] = FakeCounters()
    replies = Replies(log)
    for n, cid in enumerate(("g1", "g2")):
        commands = Commands("d/dev-a/c", log)
        started = commands.start("d/dev-a/c", counter_cmd(cid, n), 0)
        replies.add(cid, reply_bytes(commands.finish(commands.run())), True)
        entry = replies.next_unsent()
        entry[2] = 10 + n  # as the session loop sends it
        entry[4] = time.ticks_ms()
    replies.load = False
    freed = [replies.let_go(), replies.let_go()]
    replies.load_stored()
    loaded_again = replies.unsent()
    late = replies.acked(10)
    replies.settle()
    after_puback = (waiting("g1"), waiting("g2"), len(replies.held))
    replies.resend()  # the session ends before g2's PUBACK
    replies.load_stored()
    again = replies.next_unsent()
    ok = (started is None and freed[0] > 0 and freed[1] > 0 and loaded_again == 0 and late
          and after_puback == (0, 1, 1) and again is not None and again[0] == "g2"
          and again[1] is not None and replies.unsent() == 1)
    if not ok:
        print("let go", freed, loaded_again, late, after_puback, again, record())
    return ok


async def check_acknowledged_replies_are_marked_before_the_next_command_is_recorded():
    # The broker's PUBACKs for the replies of the 4 newest commands came in, and the session
    # loop has not marked them delivered yet, when a fifth command arrives: its first step
    # marks them, so recording it pushes no reply that still waits out of the command record.
    clean()
    counters = FakeCounters()
    app = Device(counters, [])
    uplink = app.uplink
    first = ("k1", "k2", "k3", "k4")
    for n, cid in enumerate(first):
        await uplink._on_message("d/dev-a/c", counter_cmd(cid, n), 0)
    for n, entry in enumerate(uplink.replies.held):
        entry[2] = 20 + n  # as the session loop sends them
        entry[4] = time.ticks_ms()
    acked = [uplink.replies.acked(20 + n) for n in range(len(first))]
    before = [waiting(cid) for cid in first]
    await uplink._on_message("d/dev-a/c", counter_cmd("k5", 5), 0)
    after = [waiting(cid) for cid in first + ("k5",)]
    pushed_out = app.logged("no longer kept on flash")
    ok = (acked == [True] * 4 and before == [1, 1, 1, 1] and after == [0, 0, 0, 0, 1]
          and not pushed_out and len(counters.adjusts) == 5
          and [e[0] for e in uplink.replies.held] == ["k5"])
    if not ok:
        print("marked first", acked, before, after, pushed_out, record())
    return ok


async def check_reply_survives_a_reboot():
    clean()
    counters = FakeCounters()  # the counters' flash: it outlives the reboot
    first = Broker([publish("d/dev-a/c", counter_cmd("c2", 9), 1)], cut_on="d/dev-a/r")
    before = Device(counters, [first]).uplink
    await run_until(before, lambda: first.closed)
    waiting_then = waiting("c2")
    # The power comes back: a new uplink, nothing in RAM. The broker delivers c2 again.
    second = Broker([publish("d/dev-a/c", counter_cmd("c2", 9), 1, dup=True)])
    after = Device(counters, [second]).uplink
    await run_until(after, lambda: len(second.replies()) == 2 and waiting("c2") == 0)
    replies = sorted([r for _, _, r in second.replies()], key=lambda r: "dup" in r)
    want = {"id": "c2", "ok": True, "result": {"seq": 1}}
    dup = dict(want)
    dup["dup"] = True
    ok = (waiting_then == 1 and len(first.replies()) == 1 and replies == [want, dup]
          and len(counters.adjusts) == 1 and waiting("c2") == 0)
    if not ok:
        print("reboot", first.got, second.got, record(), counters.adjusts)
    return ok


async def check_config_applies_live_or_after_reboot():
    # A key a running part owns takes effect at once, and the reply says "applied"; one read
    # only at boot is stored and reported as "after_reboot". Here: readings every minute
    # instead of every 15 from the next one on (the readings queue), telemetry as JSON (the
    # uplink), a watchdog timeout.
    clean()
    cmd = (b'{"id": "k1", "op": "config", "set": {"report_interval_s": 60, '
           b'"telemetry_json": 1, "wdt_timeout_ms": 60000}}')
    broker = Broker([publish("d/dev-a/c", cmd, 1)])
    app = Device(FakeCounters(), [broker], Sensors())
    uplink = app.uplink
    sampling = asyncio.create_task(app.queue.run())
    start = time.time()

    def telemetry():
        return [p for t, _, topic, _, p in broker.got if t == 0x30 and topic == "d/dev-a/t"]

    # The 15-minute wait under way ends as it began; then a batch of readings a minute apart
    # goes out, where 15-minute readings would have taken hours.
    batch = uplink.batch_size
    await run_until(uplink, lambda: telemetry(), limit_s=900 + (batch + 1) * 60)
    took = time.time() - start
    sampling.cancel()
    replies = [r for _, _, r in broker.replies()]
    want = {"id": "k1", "ok": True,
            "result": {"applied": {"report_interval_s": 60, "telemetry_json": 1},
                       "after_reboot": {"wdt_timeout_ms": 60000}}}
    sent = telemetry()
    stored = store.read_json("/config.json", {})
    message = json.loads(sent[0]) if sent and sent[0][:1] == b"{" else None
    times = [r[0] for r in message["r"][1:]] if message is not None else []
    ok = (replies == [want] and len(times) == batch
          and [times[i + 1] - times[i] for i in range(batch - 1)] == [60] * (batch - 1)
          and 900 + (batch - 1) * 60 <= took < 900 + batch * 60
          and stored == {"report_interval_s": 60, "telemetry_json": 1, "wdt_timeout_ms": 60000})
    if not ok:
        print("config", replies, sent, took, stored)
    return ok


async def check_queue_drops_readings_and_counts_them():
    clean()
    q = ReadingQueue(path="/tq", max_bytes=600)
    pushed = 200
    for i in range(pushed):
        q.push(reading_record(1700000000 + i * 900, {"t": 20.0 + i % 10, "v": 3.7}))
    kept = list(q.items())
    rseqs = [r for r, _ in kept]
    newest = struct.unpack_from("<I", kept[-1][1], 0)[0]
    again = ReadingQueue(path="/tq", max_bytes=600)  # after a reboot
    ok = (q.dropped > 0 and q.dropped + len(kept) == pushed
          and rseqs == list(range(pushed - len(kept) + 1, pushed + 1))
          and newest == 1700000000 + (pushed - 1) * 900 and q.pending() == len(kept)
          and again.dropped == q.dropped and list(again.items()) == kept
          and again.pending() == len(kept))
    if not ok:
        print("queue", q.dropped, len(kept), rseqs[:3], q.pending(), again.dropped,
              again.pending())
    return ok


async def check_events_are_never_dropped():
    clean()
    counters = Counters(directory="/qcnt")
    start = counters.last_seq
    q = ReadingQueue(path="/tq", max_bytes=600)
    for i in range(300):
        if i % 10 == 0:
            counters.count("brews", 1)
        q.push(reading_record(1700000000 + i, {"t": 21.5}))
    events = counters.events_after(start, 100)
    payload, eseq, rseq = encode(1, time.time(), events, q.items(), 200)
    in_message = [e for e in events if e[0] <= eseq]
    ok = (len(events) == 30 and [e[0] for e in events] == list(range(start + 1, start + 31))
          and q.dropped > 0 and eseq > start
          and (rseq == 0 or eseq == events[-1][0]) and len(in_message) > 0)
    if not ok:
        print("events", len(events), q.dropped, eseq, rseq)
    return ok
