# The uplink task: brings an MQTT session up over the modem whenever the cellular link is up,
# and delivers, oldest first, the counter's events (the counter's journal is their queue and
# keeps what the broker acknowledged: Counters.acked) and the routine readings (queue.py, which
# keeps its own cursor). The uplink keeps only its message number (STATE_PATH).
#
# One telemetry message in flight at a time, QoS 1. Its bytes stay in RAM until the PUBACK;
# after a reconnect the same bytes go again with DUP set, so the receiver sees the same mseq and
# drops the copy. Only the PUBACK moves the queues on: the message number is written first,
# then each queue records its acknowledgement. A reboot before the PUBACK rebuilds the message
# from the queues with the same mseq; a cut between the writes sends items again, and items
# carry their own seqs, so receivers drop the repeats.
#
# Nothing here blocks the rest of the device: sampling and the counter go on during an outage,
# and the session loop only ever waits with a timeout, woken by what it waits for: a report
# (the readings queue), a command or an acknowledgement (the client's reader), the
# connection's end.
import asyncio
import gc
import time

from app import store
from app.backoff import delay_s
from app.uplink import UplinkError, topic
from app.uplink.replies import REPLIES_MAX, REPLY_WAIT_MS, Replies, command_reply, paced, \
    reply_bytes
from micropython import const

STATE_PATH = "/uplink.json"
SECRETS_PATH = "/secrets.json"
_BACKOFF_MIN_S = const(5)
_BACKOFF_MAX_S = const(600)  # a refused or unreachable broker is retried at least every 10 min
_EVENTS_PER_MESSAGE = const(24)
_PING_MARGIN_S = const(10)  # ping this long before the keepalive runs out
_RX_SIZE = const(320)  # largest packet taken from the broker: a command of ~300 bytes
_TX_SIZE = const(448)  # largest packet sent: a telemetry message of ~430 bytes
_UPDATE_IDLE_MS = const(3600000)  # no update under way: nothing of it to wake for


def tls_context():
    # TLS over the modem's socket: the context (with the CA) for every connection, one object
    # of about 3 KB. The app makes it first thing at boot, while the heap is in one piece.
    from app.uplink.tlsstream import context, load_ca

    return context(load_ca())


class Uplink:
    # Made at boot, before the modem's task first runs, so that its buffers are taken from an
    # unbroken heap. link: the modem's ConnectionManager (wait_connected, open_socket);
    # counters: app.counter.Counters, or None; queue: the readings' ReadingQueue, whose
    # reports wake the uplink; settings: the config, of which it keeps its own keys (a change
    # comes through configure); log; tls: the TLS context (tls_context), made earlier.
    def __init__(self, link, counters, queue, settings, log, tls=None):
        self.link = link
        self.counters = counters
        self.queue = queue
        queue.on_report = self.report
        self.log = log
        self.device_id = settings["device_id"]
        self.mqtt_host = settings["mqtt_host"]
        self.mqtt_port = settings["mqtt_port"]
        self.mqtt_tls = settings["mqtt_tls"]
        self.keepalive_s = settings["keepalive_s"]
        self.batch_size = settings["batch_size"]
        self.telemetry_json = settings["telemetry_json"]
        self.health_interval_s = settings["health_interval_s"]
        # The online status message (app.health's message(as_json)), set by the app; without
        # one the device says a bare "1".
        self.status_message = None
        self._status_sent = time.ticks_ms()  # when the last status message was sent
        try:
            state = store.read_json(STATE_PATH, {})
        except store.StoreError as e:
            # Receivers tell messages apart by mseq only to see gaps; items carry their seqs.
            self.log.error("uplink", "message number lost, starting over: %s" % e)
            state = {}
        self.mseq = state.get("m", 0)  # the last message delivered
        # The broker's session holds the command topic (its SUBACK was seen): a kept session
        # needs no SUBSCRIBE. A session whose first CONNACK or SUBACK was lost is kept by the
        # broker without the subscription, and this says so.
        self._subscribed = state.get("s", 0) == 1
        del state
        self.client = None  # an MQTTClient while a session runs (see _session)
        # Made now, while the heap is in one piece (the modem's socket made its own buffer
        # when the driver was built).
        self._rx = bytearray(_RX_SIZE)
        self._tx = bytearray(_TX_SIZE)
        import app.uplink.mqtt  # noqa: F401  (its objects too, while the heap is whole)
        self._tls = tls  # the TLS context, made once (tls_context)
        if self.mqtt_tls and tls is None:
            self._tls_context()
        self._kick = asyncio.Event()
        self.session_up = asyncio.Event()  # a broker acknowledged a session since boot
        self.download = None  # an update's download (app.ota.download), set by the app
        self.reboot = False  # a reboot command: reset once its reply is delivered
        self._inflight = None  # (payload, pid, mseq, last eseq, last rseq)
        self.replies = Replies(log)  # command replies until the broker acknowledges them
        self._flush = False  # send what waits at the next chance (events, a backlog)
        self._failures = 0
        self._pid = 0  # MQTT packet ids go on from one session to the next
        self._subscribe_pid = -1  # a SUBSCRIBE sent without waiting for its SUBACK
        self.status = {"state": "idle", "connects": 0, "sent": 0, "resent": 0,
                       "last_error": None, "queued": self.queue.pending(),
                       "dropped": self.queue.dropped,
                       "events_acked": counters.acked_seq if counters is not None else 0,
                       # For the device's health: sessions that failed, seconds with one up
                       # (up_since: ticks_ms of the session's start while one is up), and
                       # when the last telemetry message was acknowledged.
                       "failures": 0, "up_s": 0, "up_since": None, "last_t": None}

    def configure(self, key, value):
        # A change from a config command (app.config names this part the owner of the key):
        # batch_size and telemetry_json from the next message, keepalive_s from the next
        # session's CONNECT, health_interval_s from the next status message.
        setattr(self, key, value)

    def busy(self):
        # A message of this session waits for its PUBACK (telemetry, or a command's reply):
        # its frames and buffers are on the heap until then.
        return self.client is not None and (self._inflight is not None or
                                            bool(self.replies.held))

    def report(self):
        # The readings queue's report (a reading queued, or due): counter events go now, with
        # what readings wait; readings alone wait for a batch.
        self.status["queued"] = self.queue.pending()
        self.status["dropped"] = self.queue.dropped
        if self._events_waiting():
            self._flush = True
        self._kick.set()

    def _events_waiting(self):
        c = self.counters
        return c is not None and c.last_seq > c.acked_seq

    def _due(self):
        if self._inflight is not None or self._flush:
            return True
        return self.queue.pending() >= self.batch_size

    # -- the session ------------------------------------------------------------------------

    async def run(self):
        while True:
            self.status["state"] = "waiting_link"
            await self.link.wait_connected()
            try:
                await self._session()
            # OSError: the socket's. MemoryError: a step the heap could not serve (the TLS
            # engine, the online status): the session ends as any failed one, with its backoff,
            # while collections and the other tasks give the heap back.
            except (UplinkError, OSError, asyncio.TimeoutError, MemoryError) as e:
                self._fail(e)
            finally:
                await self._release()
            if self.reboot:
                import machine

                machine.reset()
            self.status["state"] = "backoff"
            await asyncio.sleep(delay_s(self._failures, _BACKOFF_MIN_S, _BACKOFF_MAX_S))

    async def _release(self):
        # A client lives for one session; its buffers and its module stay for the next.
        since = self.status["up_since"]
        if since is not None:
            self.status["up_s"] += time.ticks_diff(time.ticks_ms(), since) // 1000
            self.status["up_since"] = None
        client, self.client = self.client, None
        if client is not None:
            self._pid = client.next_pid()
            await client.close()

    def _fail(self, e):
        self._failures += 1
        self.status["failures"] += 1
        self.status["last_error"] = str(e)
        self.log.warning("uplink", "session ended: %s" % e)

    async def _open(self):
        self.status["state"] = "connecting"
        if self.mqtt_tls and self._tls is None:
            # A missing or bad CA costs no air bytes: the session ends here, and is retried.
            self._tls_context(True)
        sock = await self.link.open_socket(self.mqtt_host, self.mqtt_port)
        if self._tls is None:
            return sock
        from app.uplink.tlsstream import TLSStream

        try:
            return TLSStream(sock, self._tls, self.mqtt_host)
        except Exception:  # a MemoryError too: an open socket would be the modem's only one
            await sock.close()
            raise

    def _tls_context(self, strict=False):
        try:
            self._tls = tls_context()
        except UplinkError:
            if strict:
                raise  # at boot, the first session says why

    async def _session(self):
        from app.uplink.mqtt import MQTTClient

        secrets = store.read_json(SECRETS_PATH, {})
        client = self.client = MQTTClient(
            self.device_id, secrets.get("mqtt_user", self.device_id),
            secrets.get("mqtt_password", ""), self.log, self._rx, self._tx, self._pid)
        del secrets
        client.on_message = self._on_message
        client.on_ack = self._on_ack
        client.wake = self._kick
        status_topic = topic(self.device_id, "s")
        # The retained "online" status rides in the CONNECT's segment; the will says "offline".
        # It is made before the socket is opened: a MemoryError making it leaves none open
        # (the modem's only one, which every later session would find taken).
        online = ((status_topic, self._status_payload(), 1, True, client.next_pid()),)
        stream = await self._open()
        keepalive_s = self.keepalive_s  # for this session: a change waits for the next
        try:
            present = await client.connect(stream, keepalive_s, False,
                                           (status_topic, "0", True), online)
        except BaseException:
            # Until connect holds the stream (a MemoryError making the call leaves it not
            # held), it is this session's to close; closing it twice is no error.
            await stream.close()
            raise
        self.status["connects"] += 1
        self.status["up_since"] = time.ticks_ms()
        # A new session has nothing queued, so its SUBACK is awaited; a kept one that never
        # had its SUBACK may deliver queued commands first, so that SUBACK is only noted when
        # it comes (_on_ack).
        if not present:
            self._subscribed = False
            await client.subscribe(topic(self.device_id, "c"), 1)
            self._subscribed = True
            self._save_state()
        elif not self._subscribed:
            self._subscribe_pid = await client.subscribe(topic(self.device_id, "c"), 1, False)
        self._failures = 0
        self.status["state"] = "connected"
        self.status["last_error"] = None
        self.log.info("uplink", "connected (session %s)" % ("kept" if present else "new"))
        self.session_up.set()
        if self._inflight is not None or self._events_waiting() or self.queue.pending():
            self._flush = True  # a backlog from the outage goes at once
        replies = self.replies
        replies.resend()
        while True:
            # Their flash work waits for the heap as a command's steps do (a burst), while
            # the reader takes the PUBACKs that free it.
            await paced(None, self._kick, replies.settle)
            if replies.load and len(replies.held) < REPLIES_MAX:
                await paced(None, self._kick, replies.load_stored)
            if self.reboot and not (replies.held or replies.load or
                                    (self.download is not None and self.download.reports)):
                await client.close(graceful=True)
                return
            reply = replies.next_unsent()
            if reply is not None:
                await self._send_reply(reply)
            elif self.download is not None and await self._update_traffic(client):
                pass
            elif self._due():
                # Collections before a message and before an idle wait: what each keeps
                # until its PUBACK or its wake-up (frames, the message) then takes the heap's
                # lowest holes, not its one large free block (docs/firmware.md, Heap).
                gc.collect()
                await self._deliver()
            else:
                idle = time.ticks_diff(time.ticks_ms(), client.last_tx) // 1000
                left_ms = (keepalive_s - _PING_MARGIN_S - idle) * 1000
                if left_ms <= 0:
                    # Readings waiting for their batch keep the session alive for the bytes
                    # a ping would cost, and arrive sooner.
                    if self.queue.pending():
                        self._flush = True
                    else:
                        await client.ping()
                    continue
                self._kick.clear()
                gc.collect()
                try:
                    await asyncio.wait_for_ms(self._kick.wait(),
                                              min(left_ms, self._reply_ack_left_ms(),
                                                  self._update_due_ms()))
                except asyncio.TimeoutError:
                    pass
                if client.error is not None:
                    raise UplinkError(client.error or "connection lost")

    async def _update_traffic(self, client):
        # An update's reports (QoS 1) and its next chunk request (QoS 0: one lost is asked
        # again) on d/<id>/u. -> whether something was sent.
        import json

        d = self.download
        if d.reports:
            report = d.reports[0]
            await client.publish(topic(self.device_id, "u"), json.dumps(report).encode(), 1)
            d.reports.pop(0)
            d.reported(report)
            if report.get("state") == "confirmed":
                # The version this session's status named is no longer the one running: the
                # retained status says so at once, not at the next health interval.
                await client.publish(topic(self.device_id, "s"), self._status_payload(), 1,
                                     True, wait=False)
            return True
        request = d.request()
        if request is None:
            return False
        await client.publish(topic(self.device_id, "u"), request, 0)
        return True

    def _update_due_ms(self):
        due = self.download.due_ms() if self.download is not None else None
        return _UPDATE_IDLE_MS if due is None else due

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
        await client.publish(topic(self.device_id, "e" if eseq else "t"), payload, 1, False, pid,
                             dup)
        self._inflight = None
        # The message number first: a cut before the queues' writes sends their items again
        # in the next message (receivers drop repeats by seq), never reuses the number.
        self.mseq = mseq
        self._save_state()
        if eseq:
            self.counters.acked(eseq)
            self.status["events_acked"] = eseq
        if rseq:
            self.queue.ack(rseq)
        self.status["sent"] += 1
        self.status["last_t"] = time.time()
        self.status["queued"] = self.queue.pending()
        self.status["dropped"] = self.queue.dropped
        if not (self._events_waiting() or self.queue.pending()):
            self._flush = False
        if time.ticks_diff(time.ticks_ms(), self._status_sent) >= self.health_interval_s * 1000:
            # The status again, riding with this telemetry: no wake-up of its own. QoS 1
            # without waiting: a lost one is made good by the next session's.
            await client.publish(topic(self.device_id, "s"), self._status_payload(), 1, True,
                                 wait=False)

    def _status_payload(self):
        self._status_sent = time.ticks_ms()
        if self.status_message is None:
            return b"1"
        return self.status_message(self.telemetry_json)

    def _build(self):
        # The next message from what the queues have not had acknowledged: events first (they
        # must arrive), then readings, as many as fit the client's send buffer. -> (payload,
        # pid, mseq, last event seq or 0, last rseq or 0), or None when nothing waits.
        from app.uplink.codec import encode

        client = self.client
        room = len(client.tx) - client.publish_size(topic(self.device_id, "e"), 0, 1)
        events = ()
        if self.counters is not None:
            events = self.counters.events_after(self.counters.acked_seq, _EVENTS_PER_MESSAGE)
        mseq = self.mseq + 1
        payload, eseq, rseq = encode(mseq, time.time(), events, self.queue.items(), room,
                                     self.telemetry_json)
        if not (eseq or rseq):
            if events or self.queue.pending():
                raise UplinkError("the oldest item does not fit a message of %d bytes" % room)
            return None
        return payload, client.next_pid(), mseq, eseq, rseq

    # -- commands ---------------------------------------------------------------------------

    async def _on_message(self, t, payload, size):
        # Called by the client's reader before it acknowledges the command. The reply is
        # queued (on flash first, when it has an id) for the session loop (replies.py). A
        # binary message (first byte 0) on the command topic is a chunk of an update's bundle.
        command_topic = topic(self.device_id, "c")
        if payload is not None and size and payload[0] == 0 and self.download is not None \
                and t == command_topic:
            if self.download.take_chunk(payload, size):
                self.reboot = self.reboot or self.download.done
                self._kick.set()
            return
        replies = self.replies
        # The replies acknowledged so far are marked delivered first, before this command's
        # record pushes the oldest replies out of it.
        await paced(replies, self._kick, replies.settle)
        # The client reads a batch's lines (read_line). Its reply rides with a PUBACK (4
        # bytes) in one write of the send buffer, after a PUBLISH's header (3 bytes at that
        # size), topic and packet id.
        room = len(self._tx) - 4 - 3 - 2 - len(topic(self.device_id, "r")) - 2
        reply, stored, reboot = await command_reply(command_topic, self.log, replies,
                                                    self._kick, t, payload, size, self.client,
                                                    room)
        self.reboot = self.reboot or reboot
        cid = reply.get("id")
        if reply.get("error"):
            self.log.warning("uplink", "command %s refused: %s" % (cid, reply["error"]))
        # A full queue holds the next command back (its PUBACK waits) while the loop sends.
        while replies.unsent() >= REPLIES_MAX and self.client is not None:
            self._kick.set()
            await asyncio.sleep_ms(REPLY_WAIT_MS)
        await paced(replies, self._kick, replies.settle)
        replies.add(cid, await paced(replies, self._kick, reply_bytes, reply), stored)
        self._kick.set()

    def _save_state(self):
        store.write_json(STATE_PATH, {"m": self.mseq, "s": 1 if self._subscribed else 0})

    def _on_ack(self, pid):
        # From the client's reader: a PUBACK, or a granted SUBACK. The flash work is the
        # session loop's, but for the one write of a late SUBACK (once in a broker session).
        if pid == self._subscribe_pid:
            self._subscribed = True
            self._save_state()
        elif self.replies.acked(pid):
            self._kick.set()

    def _reply_ack_left_ms(self):
        # Time left for the oldest reply sent and not acknowledged; past it the link is dead.
        from app.uplink.mqtt import ACK_TIMEOUT_MS

        i = self.replies.oldest_unacked()
        if i < 0:
            return ACK_TIMEOUT_MS
        entry = self.replies.held[i]
        left = ACK_TIMEOUT_MS - time.ticks_diff(time.ticks_ms(), entry[4])
        if left <= 0:
            raise UplinkError("no PUBACK for reply %s in %d ms" % (entry[0], ACK_TIMEOUT_MS))
        return left

    async def _send_reply(self, entry):
        # QoS 1 without waiting for the PUBACK (see _on_message); after a reconnect with DUP
        # and its first packet id. It leaves the queue only with the PUBACK (_on_ack).
        dup = entry[2] != 0
        if not dup:
            entry[2] = self.client.next_pid()
        entry[4] = time.ticks_ms()
        await self.client.publish(topic(self.device_id, "r"), entry[1], 1, False, entry[2], dup,
                                  wait=False)
