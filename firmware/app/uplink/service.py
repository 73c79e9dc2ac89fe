# The uplink task: brings an MQTT session up over the modem whenever the cellular link is up,
# and delivers, oldest first, the counter's events (the counter's journal is their queue; a
# cursor here says what the broker has acknowledged) and the routine readings (queue.py).
#
# One telemetry message in flight at a time, QoS 1. Its bytes stay in RAM until the PUBACK;
# after a reconnect the same bytes go again with DUP set, so the receiver sees the same mseq and
# drops the copy. Only the PUBACK moves the cursor (one record write): a reboot before it
# rebuilds the message from the cursor with the same mseq, and items carry their own seqs.
#
# Nothing here blocks the rest of the device: sampling and the counter go on during an outage,
# and the session loop only ever waits with a timeout.
import asyncio
import random
import time

from app import store
from app.uplink import UplinkError, topic

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


STATE_PATH = "/uplink.json"
SECRETS_PATH = "/secrets.json"
_BACKOFF_MIN_S = const(5)
_BACKOFF_MAX_S = const(600)  # a refused or unreachable broker is retried at least every 10 min
_JITTER_PERCENT = const(25)
_REPLIES_MAX = const(4)  # command replies waiting to be sent
_REPLY_WAIT_MS = const(50)
_EVENTS_PER_MESSAGE = const(24)
_PING_MARGIN_S = const(10)  # ping this long before the keepalive runs out
_RX_SIZE = const(320)  # largest packet taken from the broker: a command of ~300 bytes
_TX_SIZE = const(448)  # largest packet sent: a telemetry message of ~430 bytes
_SOCKET_RESERVE = const(640)  # the modem socket's receive buffer (512) and its object


class Uplink:
    # Made at boot, before the modem starts, so that its buffers are taken from an unbroken
    # heap; `manager` (the modem's ConnectionManager) is set once the modem is started.
    def __init__(self, app, manager=None):
        self.app = app
        self.manager = manager
        self.log = app.log
        cfg = app.config
        self.device_id = cfg["device_id"]
        self.counters = getattr(app, "counters", None)
        try:
            self.cursor = store.read_json(STATE_PATH, None) or {"m": 0, "e": 0, "r": 0}
        except store.StoreError as e:
            # The counter keeps its own acknowledged mark; resending from there is safe.
            self.log.error("uplink", "cursor lost, resending: %s" % e)
            self.cursor = {"m": 0, "e": 0, "r": 0}
        if self.counters is not None:
            # The two marks meet again after a cut between writing ours and the counter's.
            acked = getattr(self.counters, "acked_seq", 0)
            if acked > self.cursor["e"]:
                self.cursor["e"] = acked
            elif self.cursor["e"]:
                self.counters.acked(self.cursor["e"])
        from app.uplink.queue import ReadingQueue

        self.queue = ReadingQueue(self.cursor["r"])
        self.client = None  # an MQTTClient while a session runs (see _session)
        # Made now, while the heap is in one piece; after the modem's bring-up it is in
        # pieces of a few hundred bytes. The reserve is let go just before the first socket
        # opens, so the modem layer finds room there for the socket's receive buffer.
        self._rx = bytearray(_RX_SIZE)
        self._tx = bytearray(_TX_SIZE)
        self._reserve = bytearray(_SOCKET_RESERVE)
        import app.uplink.mqtt  # noqa: F401  (its objects too, while the heap is whole)
        self._kick = asyncio.Event()
        self.reboot = False  # a reboot command: reset once its reply is delivered
        self._inflight = None  # (payload, pid, mseq, last eseq, last rseq)
        self._replies = []
        self._flush = False  # send what waits at the next chance (events, a backlog)
        self._failures = 0
        self._pid = 0  # MQTT packet ids go on from one session to the next
        self.status = {"state": "idle", "connects": 0, "sent": 0, "resent": 0,
                       "last_error": None, "queued": 0, "dropped": self.queue.dropped,
                       "events_acked": self.cursor["e"]}

    # -- sampling: runs whether or not there is a link -------------------------------------

    async def sample(self):
        from app.uplink.codec import reading_record

        while True:
            await asyncio.sleep(self.app.config["report_interval_s"])
            sensors = getattr(self.app, "sensors", None)
            if sensors is not None:
                values = sensors.readings()
                if values:
                    try:
                        self.queue.push(reading_record(time.time(), values))
                    except store.StoreError as e:
                        self.log.error("uplink", "reading not queued: %s" % e)
            self.status["queued"] = self.queue.pending()
            self.status["dropped"] = self.queue.dropped
            if self._events_waiting():
                self._flush = True  # events go at the next report, with what readings wait
            self._kick.set()

    def _events_waiting(self):
        return self.counters is not None and self.counters.last_seq > self.cursor["e"]

    def _due(self):
        if self._inflight is not None or self._flush:
            return True
        return self.queue.pending() >= self.app.config["batch_size"]

    # -- the session ------------------------------------------------------------------------

    async def run(self):
        while True:
            self.status["state"] = "waiting_link"
            await self.manager.wait_connected()
            try:
                await self._session()
            except (UplinkError, OSError, asyncio.TimeoutError) as e:
                self._fail(e)
            except Exception as e:  # the modem layer's errors end a session, not the task
                if type(e).__name__ not in ("ModemError", "ATError", "ATTimeout"):
                    raise
                self._fail(e)
            finally:
                await self._release()
            if self.reboot:
                import machine

                machine.reset()
            await self._backoff()

    async def _release(self):
        # A client lives for one session; its buffers and its module stay for the next.
        client, self.client = self.client, None
        if client is not None:
            self._pid = client.next_pid()
            await client.close()

    def _fail(self, e):
        self._failures += 1
        self.status["last_error"] = str(e)
        self.log.warning("uplink", "session ended: %s" % e)

    async def _backoff(self):
        self.status["state"] = "backoff"
        delay = min(_BACKOFF_MAX_S, _BACKOFF_MIN_S << min(self._failures - 1, 10))
        jitter = delay * _JITTER_PERCENT // 100
        await asyncio.sleep(delay + (random.randint(-jitter, jitter) if jitter else 0))

    async def _open(self):
        cfg = self.app.config
        self.status["state"] = "connecting"
        if self._reserve is not None:
            import gc

            self._reserve = None
            gc.collect()
        sock = await self.manager.open_socket(cfg["mqtt_host"], cfg["mqtt_port"])
        if not cfg["mqtt_tls"]:
            return sock
        # TLS over the modem's socket needs a stream adapter for the tls module (see README,
        # "The uplink", TLS); until it is built, a TLS broker is refused in plain words.
        await sock.close()
        raise UplinkError("mqtt_tls=1: TLS over the modem socket is not built in this firmware")

    async def _session(self):
        from app.uplink.mqtt import MQTTClient

        cfg = self.app.config
        secrets = store.read_json(SECRETS_PATH, {})
        client = self.client = MQTTClient(
            self.device_id, secrets.get("mqtt_user", self.device_id),
            secrets.get("mqtt_password", ""), self.log, self._rx, self._tx, self._pid)
        del secrets
        client.on_message = self._on_message
        client.wake = self._kick
        status_topic = topic(self.device_id, "s")
        stream = await self._open()
        # The retained "online" status rides in the CONNECT's segment; the will says "offline".
        present = await client.connect(
            stream, cfg["keepalive_s"], False, (status_topic, "0", True),
            ((status_topic, b"1", 1, True, client.next_pid()),))
        self.status["connects"] += 1
        if not present:
            await client.subscribe(topic(self.device_id, "c"), 1)
        self._failures = 0
        self.status["state"] = "connected"
        self.status["last_error"] = None
        self.log.info("uplink", "connected (session %s)" % ("kept" if present else "new"))
        if self._inflight is not None or self._events_waiting() or self.queue.pending():
            self._flush = True  # a backlog from the outage goes at once
        while True:
            if self.reboot and not self._replies:
                await client.close(graceful=True)
                return
            if self._replies:
                # Not waiting for its PUBACK: the reader that would see it may be holding the
                # next command until this queue has room.
                await client.publish(topic(self.device_id, "r"), self._replies[0], 1, wait=False)
                self._replies.pop(0)
            elif self._due():
                await self._deliver()
            else:
                idle = time.ticks_diff(time.ticks_ms(), client.last_tx) // 1000
                left = cfg["keepalive_s"] - _PING_MARGIN_S - idle
                if left <= 0:
                    await client.ping()
                    continue
                self._kick.clear()
                try:
                    await asyncio.wait_for(self._kick.wait(), left)
                except asyncio.TimeoutError:
                    pass
                if client.error is not None:
                    raise UplinkError(client.error or "connection lost")

    async def _deliver(self):
        client = self.client
        if self._inflight is None:
            self._inflight = self._build()
            if self._inflight is None:
                self._flush = False
                return
            dup = False
        else:
            dup = True
            self.status["resent"] += 1
        payload, pid, mseq, eseq, rseq = self._inflight
        leaf = "e" if eseq > self.cursor["e"] else "t"
        await client.publish(topic(self.device_id, leaf), payload, 1, False, pid, dup)
        self._inflight = None
        self.cursor = {"m": mseq, "e": max(eseq, self.cursor["e"]),
                       "r": max(rseq, self.cursor["r"])}
        store.write_json(STATE_PATH, self.cursor)
        if self.counters is not None and eseq:
            self.counters.acked(eseq)
        self.queue.ack(self.cursor["r"])
        self.status["sent"] += 1
        self.status["events_acked"] = self.cursor["e"]
        self.status["queued"] = self.queue.pending()
        self.status["dropped"] = self.queue.dropped
        if not (self._events_waiting() or self.queue.pending()):
            self._flush = False

    def _build(self):
        # The next message from the cursor: events first (they must arrive), then readings,
        # as many as fit the client's send buffer.
        from app.uplink.codec import encode

        client = self.client
        room = len(client.tx) - client.publish_size(topic(self.device_id, "e"), 0, 1)
        events = ()
        if self.counters is not None:
            events = self.counters.events_after(self.cursor["e"], _EVENTS_PER_MESSAGE)
        mseq = self.cursor["m"] + 1
        payload, eseq, rseq = encode(mseq, time.time(), events, self.queue.items(), room,
                                     self.app.config["telemetry_json"])
        if not (eseq or rseq):
            if events or self.queue.pending():
                raise UplinkError("the oldest item does not fit a message of %d bytes" % room)
            return None
        return payload, client.next_pid(), mseq, eseq or self.cursor["e"], rseq or self.cursor["r"]

    # -- commands ---------------------------------------------------------------------------

    async def _on_message(self, t, payload, size):
        # Commands are rare: their module is loaded for each one and let go after it.
        import json
        import sys

        from app.uplink.commands import Commands

        try:
            commands = Commands(self.app, topic(self.device_id, "c"))
            reply = commands.handle(t, payload, size)
            self.reboot = self.reboot or commands.reboot
        finally:
            del Commands
            sys.modules.pop("app.uplink.commands", None)
        if reply.get("error"):
            self.log.warning("uplink", "command %s refused: %s" % (reply.get("id"),
                                                                   reply["error"]))
        # A full reply queue holds the next command back (its PUBACK waits), never drops.
        while len(self._replies) >= _REPLIES_MAX and self.client is not None:
            self._kick.set()
            await asyncio.sleep_ms(_REPLY_WAIT_MS)
        self._replies.append(json.dumps(reply).encode())
        self._kick.set()
