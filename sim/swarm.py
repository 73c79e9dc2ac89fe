"""Many lightweight virtual devices at once against a broker (`musket sim fleet`).

A full virtual device is a firmware process with its own models; thousands of them do not fit
two cores. A lightweight device keeps only what the broker and the fleet service see: its own
connection and credentials, the firmware's MQTT client (app/uplink/mqtt.py) over a real
socket, and messages made by the firmware's telemetry codec (app/uplink/codec.py) from the
same kind of items the device's queues hold. What it does not run is the firmware around
them: sensors, the counter's journal on flash, the modem. Its usage is drawn from a seeded
random process, and its profile (report interval, batch size, keepalive) is the firmware's
config schema's defaults, so the traffic has the default profile's shape.

Its messages are the firmware's, byte for byte, for the same inputs:
tests/sim/test_swarm.py re-encodes what a full-firmware device sent with this module's
`telemetry` and compares.

Run by musket.simfleet in its own process (or several), with the firmware and the plain
stand-ins on PYTHONPATH:  python -m musket_sim.swarm SPEC.json
SPEC (written 0600: it holds the devices' passwords) is JSON: devices [{id, user, password,
brokers, resume}] (resume: an earlier run's totals for the device, to go on from; brokers:
[host, port] pairs, the first its own; after a failed session it tries the next, as a device
behind a load balancer reaches another node of a cluster), profile
{report_interval_s, batch_size, keepalive_s}, speed (virtual seconds per wall second), run_s
(wall seconds), start (virtual epoch seconds), brews_per_day, backlog_s (readings and brews
already waiting at start, as after an outage; -1: each device somewhere in its cycle), seed,
connects_per_s. It prints one JSON line a second ({"event": "progress", ...}) and a last one
with every device's totals and the process's full collections ({"event": "done", ...}).
"""

import asyncio
import contextlib
import gc
import json
import random
import sys
import time

import mp_compat

mp_compat.install()

from app import log as log_mod  # noqa: E402 - the compat names come first
from app.backoff import delay_s  # noqa: E402
from app.config import DEFAULTS  # noqa: E402
from app.uplink import UplinkError, topic  # noqa: E402
from app.uplink import mqtt as mqtt_module  # noqa: E402
from app.uplink.codec import encode, reading_record  # noqa: E402
from app.uplink.mqtt import MQTTClient  # noqa: E402

RX_SIZE = 320  # the firmware's receive and send buffers (app/uplink/service.py)
TX_SIZE = 448
EVENTS_PER_MESSAGE = 24  # as the firmware's session takes them from the journal
BACKOFF_MIN_S = 5  # the session's retry pacing (app/uplink/service.py)
BACKOFF_MAX_S = 600
READ_CHUNK = 4096


class _OneHeapForAll:
    # The firmware's MQTT reader collects before each wait for a packet, so that on the chip
    # what the wait holds takes the heap's lowest holes (docs/firmware.md). Here thousands of
    # devices share one CPython heap, and a full collection per packet of each walks all of
    # them every time: a swarm of 10,000 spent its two cores there and was still connecting
    # its devices minutes later. CPython's own collector keeps this heap.
    @staticmethod
    def collect():
        pass


mqtt_module.gc = _OneHeapForAll


def profile_defaults():
    """The firmware's default profile: what a device that was never configured does."""
    return {k: DEFAULTS[k] for k in ("report_interval_s", "batch_size", "keepalive_s")}


def telemetry(device_id, mseq, t0, events, readings):
    """-> (topic, payload, last event seq, last rseq): the next message exactly as the firmware
    builds it (app/uplink/service.py _build), from (seq, time, kind, name, delta, total, info)
    events and (rseq, reading_record) readings."""
    probe = MQTTClient(device_id, "", "", None, bytearray(0), bytearray(TX_SIZE))
    room = TX_SIZE - probe.publish_size(topic(device_id, "e"), 0, 1)
    payload, eseq, rseq = encode(mseq, t0, events, readings, room)
    return topic(device_id, "e" if eseq else "t"), payload, eseq, rseq


class _Stream:
    # The firmware client's stream (write, read_into, close, closed) over an asyncio socket.
    def __init__(self, reader, writer):
        self._reader = reader
        self._writer = writer
        self._buf = b""
        self.closed = False

    async def write(self, data):
        self._writer.write(bytes(data))
        await self._writer.drain()

    async def read_into(self, mv):
        if not self._buf:
            self._buf = await self._reader.read(READ_CHUNK)
            if not self._buf:
                self.closed = True
                return 0
        n = min(len(mv), len(self._buf))
        mv[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    async def close(self):
        self.closed = True
        self._writer.close()


class Clock:
    # Virtual time: `start` at the wall moment the swarm began, running `speed` times faster.
    def __init__(self, start, speed):
        self.start = start
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self):
        return self.start + (time.monotonic() - self._t0) * self.speed

    async def until(self, t):
        wait = (t - self.now()) / self.speed
        if wait > 0:
            await asyncio.sleep(wait)


class LightDevice:
    def __init__(self, spec, profile, clock, rng, brews_per_day, backlog_s, totals):
        self.id = spec["id"]
        self.brokers = [tuple(b) for b in spec["brokers"]]
        self._user = spec["user"]
        self._password = spec["password"]
        self.profile = profile
        self.clock = clock
        self.rng = rng
        self.brew_gap_s = 86400 / brews_per_day if brews_per_day else 0
        self.events = []  # (seq, time, kind, name, delta, total, info) not yet acknowledged
        self.readings = []  # (rseq, record) not yet acknowledged
        # Where an earlier run of the same device left off ("resume" in its entry): a device
        # keeps its numbering for life, and the fleet drops a message number it had before.
        earlier = spec.get("resume", {})
        self.mseq = earlier.get("mseq", 0)
        self.seq = earlier.get("events", 0)
        self.rseq = earlier.get("readings", 0)
        self.brews = earlier.get("brews", 0)
        self.totals = totals  # the swarm's shared counters
        self.failures = 0
        self.connected = False
        self.published = []  # (mseq, wall time of the PUBLISH), for the fleet's ingest latency
        self.inflight = None  # (topic, payload, last event seq, last rseq, packet id)
        self.pid = 0  # the packet ids go on from session to session, as the firmware's
        now = clock.now()
        interval = profile["report_interval_s"]
        if backlog_s < 0:
            # "Steady": a device met somewhere in its batching cycle: its batch fills at a
            # moment drawn evenly over the next batch_size readings, so a fleet started this
            # way sends at the default profile's steady rate at once, neither in a burst nor
            # after a lull. Its readings of the cycle so far are waiting; no brew yet.
            fills_in = rng.random() * profile["batch_size"] * interval
            self.next_reading = now + fills_in - (profile["batch_size"] - 1) * interval
            brews_from = now
        else:
            self.next_reading = now - backlog_s + rng.random() * interval
            brews_from = now - backlog_s
        self.next_brew = brews_from + self._brew_gap() if self.brew_gap_s else None
        self._catch_up(now)

    def _brew_gap(self):
        return self.rng.expovariate(1 / self.brew_gap_s)

    def _catch_up(self, now):
        # Everything due by `now`: readings every interval, brews as they came.
        while self.next_brew is not None and self.next_brew <= now:
            self.brews += 1
            self.seq += 1
            self.events.append((self.seq, int(self.next_brew), "use", "brews", 1, self.brews,
                                None))
            self.next_brew += self._brew_gap()
        while self.next_reading <= now:
            self.rseq += 1
            values = {"t": round(self.rng.uniform(18, 26), 2),
                      "rh": round(self.rng.uniform(30, 60), 1)}
            self.readings.append((self.rseq, reading_record(self.next_reading, values)))
            self.next_reading += self.profile["report_interval_s"]

    def summary(self):
        return {"brews": self.brews, "events": self.seq, "readings": self.rseq,
                "mseq": self.mseq, "unsent_events": len(self.events),
                "unsent_readings": len(self.readings), "published": self.published}

    async def run(self, stop):
        while not stop.is_set():
            client = MQTTClient(self.id, self._user, self._password,
                                log_mod.Log(capacity=2, echo=False),
                                bytearray(RX_SIZE), bytearray(TX_SIZE), self.pid)
            try:
                await self._session(client, stop)
            except (UplinkError, OSError, TimeoutError) as e:
                self.brokers.append(self.brokers.pop(0))
                self.failures += 1
                self.totals["failures"] += 1
                self.totals["last_error"] = "%s: %s" % (self.id, e)
            finally:
                if self.connected:
                    self.totals["connected"] -= 1
                    self.connected = False
                self.pid = client.next_pid()
                await client.close(graceful=stop.is_set())
            if not stop.is_set():
                await _pause(stop, delay_s(self.failures, BACKOFF_MIN_S, BACKOFF_MAX_S)
                             / self.clock.speed)

    async def _session(self, client, stop):
        reader, writer = await asyncio.open_connection(*self.brokers[0])
        status = topic(self.id, "s")
        await client.connect(_Stream(reader, writer), self.profile["keepalive_s"], False,
                             (status, "0", True), ((status, b"1", 1, True, client.next_pid()),))
        self.connected = True
        self.totals["connected"] += 1
        totals = self.totals
        totals["connected_max"] = max(totals["connected_max"], totals["connected"])
        self.failures = 0
        last_sent = self.clock.now()
        while not stop.is_set():
            self._catch_up(self.clock.now())
            if self.events or len(self.readings) >= self.profile["batch_size"]:
                await self._deliver(client)
                last_sent = self.clock.now()
                continue
            if self.clock.now() - last_sent >= self.profile["keepalive_s"]:
                await client.ping()
                last_sent = self.clock.now()
            due = min(self.next_reading, last_sent + self.profile["keepalive_s"])
            await _pause(stop, max(0.0, (due - self.clock.now()) / self.clock.speed))

    async def _deliver(self, client):
        # As the firmware's session does: the message in flight keeps its bytes and its packet
        # id until the broker's PUBACK, and goes again with DUP set on the next session.
        dup = self.inflight is not None
        if not dup:
            built = telemetry(self.id, self.mseq + 1, self.clock.now(),
                              self.events[:EVENTS_PER_MESSAGE], self.readings)
            if not (built[2] or built[3]):
                raise UplinkError("the oldest item does not fit a message")
            self.inflight = built + (client.next_pid(),)
        name, payload, eseq, rseq, pid = self.inflight
        self.totals["sent"] += 1
        sent_at = time.time()
        await client.publish(name, payload, 1, False, pid, dup)
        self.inflight = None
        self.mseq += 1
        self.published.append((self.mseq, sent_at))
        self.totals["acked"] += 1
        self.events = [e for e in self.events if e[0] > eseq]
        self.readings = [r for r in self.readings if r[0] > rseq]


async def _pause(stop, seconds):
    # Waits `seconds` of wall time, or less if the swarm stops meanwhile.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run(spec):
    clock = Clock(spec.get("start", time.time()), spec.get("speed", 1.0))
    profile = dict(profile_defaults(), **spec.get("profile", {}))
    totals = {"connected": 0, "connected_max": 0, "sent": 0, "acked": 0, "failures": 0,
              "last_error": None}
    seed = spec.get("seed", 0)
    devices = [LightDevice(d, profile, clock, random.Random(seed * 1000003 + i),
                           spec.get("brews_per_day", 20), spec.get("backlog_s", 0), totals)
               for i, d in enumerate(spec["devices"])]
    stop = asyncio.Event()
    tasks = []
    gap_s = 1 / spec.get("connects_per_s", 500)
    t_end = time.monotonic() + spec["run_s"]
    for d in devices:  # paced, as a fleet coming back would be by its jitter
        tasks.append(asyncio.create_task(d.run(stop)))
        await asyncio.sleep(gap_s)
    while time.monotonic() < t_end:
        _emit("progress", totals)
        await asyncio.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    done = dict(totals)
    done["devices"] = {d.id: d.summary() for d in devices}
    done["full_collections"] = gc.get_stats()[2]["collections"]
    _emit("done", done)


def _emit(event, fields):
    out = dict(fields, event=event)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def main(argv):
    with open(argv[1]) as f:
        spec = json.load(f)
    asyncio.run(run(spec))


if __name__ == "__main__":
    main(sys.argv)
