# An MQTT 3.1.1 client over any byte stream with async write(data) / read_into(buf) / close()
# and `closed` (the modem's Socket, or the TLS adapter over it).
#
# Small on purpose: one receive buffer and one send buffer, allocated once; packets are packed
# into them with struct.pack_into and sent with one write each, so a packet is one TCP segment
# over the air. The PUBACK for a message from the broker rides in the next PUBLISH the device
# sends (a command's reply) when one follows within _ACK_RIDE_MS: a
# segment of its own costs 52 bytes of headers and a 52-byte ACK for 4 bytes of MQTT.
# One reader task per connection takes every packet from the broker; callers of
# publish/subscribe/ping wait, with a timeout, for the acknowledgement it records. Anything the
# broker sends that is not MQTT ends the connection with an UplinkError: the service reconnects.
# Retransmission is the caller's: it keeps an unacknowledged message and sends it again with
# DUP set on the next connection (persistent session, clean=False).
import asyncio
import gc
import struct
import time

from app.uplink import UplinkError
from micropython import const

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)
_DUP = const(0x08)
_RETAIN = const(0x01)
# Control packets: PUBACK, PINGREQ, SUBSCRIBE, DISCONNECT. The largest is the SUBSCRIBE to
# d/<device id>/c for the longest id config allows (64): 2 + 2 + 2 + 68 + 1 = 75 bytes.
_CTL = const(76)
_RECENT = const(8)  # inbound QoS 1 packet ids remembered against redelivery
_ACK_RIDE_MS = const(100)  # how long an inbound message's PUBACK waits for a PUBLISH to ride
_ACK_LOOK_MS = const(10)
ACK_TIMEOUT_MS = 30000  # CONNACK / PUBACK / SUBACK / PINGRESP over a slow LTE-M cell

# CONNACK return codes 1..5 (MQTT 3.1.1 section 3.2.2.3).
REFUSED = ("", "unacceptable protocol version", "client id rejected", "server unavailable",
           "bad user name or password", "not authorised")


def _put_str(buf, pos, s):
    if isinstance(s, str):
        s = s.encode()
    n = len(s)
    struct.pack_into("!H", buf, pos, n)
    buf[pos + 2:pos + 2 + n] = s
    return pos + 2 + n


def _put_header(buf, pos, kind, remaining):
    # Fixed header: type/flags byte, then the remaining length as a base-128 varint.
    buf[pos] = kind
    pos += 1
    while True:
        b = remaining & 0x7F
        remaining >>= 7
        buf[pos] = b | 0x80 if remaining else b
        pos += 1
        if not remaining:
            return pos


class MQTTClient:
    # rx and tx: the receive and send buffers, bytearrays the owner allocates once (at boot,
    # from an unbroken heap) and lends to each connection's client.
    def __init__(self, client_id, user, password, log, rx, tx, pid=0):
        self.client_id = client_id
        self.user = user
        self._password = password
        self.log = log
        self.rx = rx
        self.tx = tx
        self._ctl = bytearray(_CTL)
        self._ack = bytearray(4)  # the PUBACK for the message the reader last took
        self._ack[0] = _PUBACK
        self._ack[1] = 2
        self._ack_due = False  # that PUBACK waits to ride the next PUBLISH
        self._hdr = bytearray(2)
        # async fn(topic: str, payload: memoryview or None when oversized, size: int), awaited
        # before the PUBACK: a command the device dies handling is delivered again.
        self.on_message = None
        # fn(pid), called by the reader for each PUBACK: for messages published with wait=False.
        self.on_ack = None
        self.stream = None
        self.wake = None  # an asyncio.Event set when the connection ends (the owner's loop)
        self.error = None  # why the connection ended
        self.oversized = 0  # inbound packets larger than rx, dropped
        self._pid = pid
        self._acks = []  # packet ids acknowledged (PUBACK or SUBACK), newest last
        self._granted = 0  # SUBACK return code
        self._pong = False
        self._event = asyncio.Event()  # pulsed on every acknowledgement and on the end
        self._reader = None
        self._recent = []  # inbound QoS 1 packet ids already handled
        self._unread = 0  # bytes of the message being taken still in the stream
        self._line_start = 0  # read_line's place in rx
        self._line_end = 0
        self.last_tx = time.ticks_ms()

    # -- connection ---------------------------------------------------------------------

    def next_pid(self):
        self._pid = self._pid % 0xFFFF + 1
        return self._pid

    async def connect(self, stream, keepalive_s, clean=False, will=None, then=None):
        # Sends CONNECT (with the will: (topic, message, retain)) and, in the same write, the
        # packets `then` names: ((topic, payload, qos, retain, pid), ...), which the broker
        # handles after accepting the connection; one that does not fit that write (a long
        # device id and a full status) is published right after the CONNACK. Returns the
        # CONNACK's session-present flag.
        self.stream = stream
        self.error = None
        self._acks = []
        self._recent = []
        self._unread = 0
        self._ack_due = False
        user = self.user
        password = self._password
        flags = 0x80 | 0x40 if user else 0  # user name and password
        n = 10 + 2 + len(self.client_id)
        if will:
            flags |= 0x04 | 0x08 | (0x20 if will[2] else 0)  # will, will QoS 1, retain
            n += 2 + len(will[0]) + 2 + len(will[1])
        if user:
            n += 2 + len(user) + 2 + len(password)
        if clean:
            flags |= 0x02
        buf = self.tx
        if n + 5 > len(buf):
            raise UplinkError("connect: %d bytes do not fit the send buffer" % n)
        pos = _put_header(buf, 0, _CONNECT, n)
        pos = _put_str(buf, pos, "MQTT")
        buf[pos] = 4  # protocol level 4: MQTT 3.1.1
        buf[pos + 1] = flags
        struct.pack_into("!H", buf, pos + 2, keepalive_s)
        pos = _put_str(buf, pos + 4, self.client_id)
        if will:
            pos = _put_str(buf, pos, will[0])
            pos = _put_str(buf, pos, will[1])
        if user:
            pos = _put_str(buf, pos, user)
            pos = _put_str(buf, pos, password)
        later = []  # what does not fit the CONNECT's write goes right after the CONNACK
        for p in then or ():
            if pos + self.publish_size(p[0], len(p[1]), p[2]) > len(buf):
                later.append(p)
            else:
                pos = self.pack_publish(pos, p[0], p[1], p[2], p[3], p[4])
        await self._send(memoryview(buf)[:pos])
        try:
            kind, size = await asyncio.wait_for_ms(self._read_packet(), ACK_TIMEOUT_MS)
        except asyncio.TimeoutError:
            raise UplinkError("connect: no CONNACK in %d ms" % ACK_TIMEOUT_MS)
        if kind != _CONNACK or size != 2:
            raise UplinkError("connect: expected CONNACK, got packet 0x%02x" % kind)
        code = self.rx[1]
        if code:
            why = REFUSED[code] if code < len(REFUSED) else "return code %d" % code
            raise UplinkError("connect: refused: %s" % why, code)
        present = bool(self.rx[0] & 1)
        self._reader = asyncio.create_task(self._read_loop())
        for p in later:
            await self.publish(p[0], p[1], p[2], p[3], p[4], wait=False)
        return present

    async def close(self, graceful=False):
        # Ends the connection; a graceful one sends DISCONNECT first (the broker then drops
        # the will). Never raises: the stream may be gone already.
        stream, self.stream = self.stream, None
        if self.error is None:
            self.error = "closed"
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
        if stream is not None:
            try:
                if graceful and not stream.closed:
                    self._ctl[0] = _DISCONNECT
                    self._ctl[1] = 0
                    await stream.write(memoryview(self._ctl)[:2])
                await stream.close()
            except Exception as e:  # noqa: BLE001 - the link is going anyway: say why
                self.log.debug("mqtt", "close: %r" % (e,))
        self._event.set()

    # -- packets out ----------------------------------------------------------------------

    async def _send(self, data):
        if self.stream is None or self.stream.closed:
            raise UplinkError("send: not connected (%s)" % (self.error or "closed"))
        # No lock: every packet is at most one modem send (MAX_SEND), so the reader's PUBACK and
        # the caller's packet cannot interleave.
        await self.stream.write(data)
        self.last_tx = time.ticks_ms()

    def publish_size(self, topic, n, qos):
        body = 2 + len(topic) + n + (2 if qos else 0)
        return body + (2 if body < 128 else 3 if body < 16384 else 4)

    def pack_publish(self, pos, topic, payload, qos, retain, pid, dup=False):
        # Packs one PUBLISH into the send buffer at pos; returns the end.
        n = len(payload)
        if pos + self.publish_size(topic, n, qos) > len(self.tx):
            raise UplinkError("publish: %d bytes do not fit the send buffer" % n)
        kind = _PUBLISH | (qos << 1) | (_RETAIN if retain else 0) | (_DUP if dup else 0)
        pos = _put_header(self.tx, pos, kind, 2 + len(topic) + n + (2 if qos else 0))
        pos = _put_str(self.tx, pos, topic)
        if qos:
            struct.pack_into("!H", self.tx, pos, pid)
            pos += 2
        self.tx[pos:pos + n] = payload
        return pos + n

    async def publish(self, topic, payload, qos=1, retain=False, pid=0, dup=False, wait=True):
        # QoS 0: sent. QoS 1: returns once the broker's PUBACK for `pid` (0: a new one) came,
        # raises UplinkError if none comes in ACK_TIMEOUT_MS or the connection ends.
        if qos and not pid:
            pid = self.next_pid()
        pos = 0
        if self._ack_due and 4 + self.publish_size(topic, len(payload), qos) <= len(self.tx):
            # The PUBACK the reader holds goes first, in the same write (_on_publish).
            self.tx[0:4] = self._ack
            pos = 4
            self._ack_due = False
        end = self.pack_publish(pos, topic, payload, qos, retain, pid, dup)
        await self._send(memoryview(self.tx)[:end])
        if qos and wait:
            await self._wait(pid, "PUBACK")
        return pid

    async def subscribe(self, topic, qos=1, wait=True):
        # With wait=False it returns the packet id at once; on_ack hears of the SUBACK. A kept
        # session may be delivering queued commands first, which wait for the session loop.
        pid = self.next_pid()
        n = 2 + 2 + len(topic) + 1
        if n + 2 > _CTL:
            raise UplinkError("subscribe: topic too long")
        pos = _put_header(self._ctl, 0, _SUBSCRIBE, n)
        struct.pack_into("!H", self._ctl, pos, pid)
        pos = _put_str(self._ctl, pos + 2, topic)
        self._ctl[pos] = qos
        await self._send(memoryview(self._ctl)[:pos + 1])
        if not wait:
            return pid
        await self._wait(pid, "SUBACK")
        if self._granted == 0x80:
            raise UplinkError("subscribe %s: refused by the broker" % topic, 0x80)
        return self._granted

    async def ping(self):
        # PINGREQ; raises UplinkError if no PINGRESP comes in time (a dead link or NAT entry).
        self._pong = False
        self._ctl[0] = _PINGREQ
        self._ctl[1] = 0
        await self._send(memoryview(self._ctl)[:2])
        await self._wait(-1, "PINGRESP")

    async def _wait(self, pid, what):
        deadline = time.ticks_add(time.ticks_ms(), ACK_TIMEOUT_MS)
        while True:
            if (self._pong if pid < 0 else pid in self._acks):
                return
            if self.error is not None:
                raise UplinkError("no %s: %s" % (what, self.error))
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                raise UplinkError("no %s in %d ms" % (what, ACK_TIMEOUT_MS))
            self._event.clear()
            try:
                await asyncio.wait_for_ms(self._event.wait(), left)
            except asyncio.TimeoutError:
                pass

    # -- packets in -----------------------------------------------------------------------

    async def _read_exact(self, mv):
        got = 0
        while got < len(mv):
            n = await self.stream.read_into(mv[got:])
            if not n:
                raise UplinkError("connection closed by the broker")
            got += n

    async def _read_packet(self):
        # -> (type byte, body size); the body is in self.rx, or dropped if it does not fit.
        hdr = self._hdr
        mv = memoryview(hdr)
        await self._read_exact(mv[:1])
        kind = hdr[0]
        size = 0
        shift = 0
        while True:
            await self._read_exact(mv[1:2])
            size |= (hdr[1] & 0x7F) << shift
            if not hdr[1] & 0x80:
                break
            shift += 7
            if shift > 21:
                raise UplinkError("protocol: bad remaining length")
        if (kind & 0xF0) not in (_CONNACK, _PUBLISH, _PUBACK, _SUBACK, _PINGRESP):
            raise UplinkError("protocol: unexpected packet 0x%02x" % kind)
        if size <= len(self.rx):
            await self._read_exact(memoryview(self.rx)[:size])
            return kind, size
        if (kind & 0xF0) != _PUBLISH:
            raise UplinkError("protocol: packet 0x%02x of %d bytes" % (kind, size))
        # A message larger than rx: its topic and packet id are read now, its payload as its
        # taker reads it (read_line), and the rest is read past once it is done (_read_past),
        # so one oversized command cannot end the connection.
        rx = memoryview(self.rx)
        await self._read_exact(rx[:2])
        head = 2 + struct.unpack_from("!H", self.rx, 0)[0] + (2 if kind & 0x06 else 0)
        if head > len(self.rx) or head > size:
            raise UplinkError("protocol: bad PUBLISH (%d bytes before its payload)" % head)
        await self._read_exact(rx[2:head])
        self._unread = size - head
        self.oversized += 1
        return kind, -size

    async def read_line(self):
        # The next line of the payload on_message is taking, without its "\n", as a
        # memoryview into rx that holds until the next call; None once the payload is all
        # read. A payload that fit rx is read from there; a larger one from the stream, a
        # buffer at a time. A line longer than rx is read past and raises ValueError.
        rx = self.rx
        too_long = False
        while True:
            start, end = self._line_start, self._line_end
            i = start
            while i < end and rx[i] != 10:
                i += 1
            if i < end or not self._unread:
                self._line_start = i + 1 if i < end else end
                if too_long:
                    raise ValueError("a line of more than %d bytes" % len(rx))
                if i == end and start == end:
                    return None
                return memoryview(rx)[start:i]
            if too_long:
                start = end  # the line is read past, not kept
            n = end - start
            if n == len(rx):
                too_long = True
                n = 0
            for j in range(n):  # the line's start moves to the front, for the rest of it
                rx[j] = rx[start + j]
            got = await self.stream.read_into(memoryview(rx)[n:n + min(len(rx) - n,
                                                                         self._unread)])
            if not got:
                raise UplinkError("connection closed by the broker")
            self._unread -= got
            self._line_start = 0
            self._line_end = n + got

    async def _read_past(self):
        # What the message's taker left of a payload larger than rx.
        rx = memoryview(self.rx)
        while self._unread:
            got = await self.stream.read_into(rx[:min(self._unread, len(rx))])
            if not got:
                raise UplinkError("connection closed by the broker")
            self._unread -= got

    async def _read_loop(self):
        try:
            while True:
                # A collection first: the frames of the wait for the next packet (minutes
                # while the session idles) then take the heap's lowest holes, not its one
                # large free block (docs/firmware.md, Heap).
                gc.collect()
                kind, size = await self._read_packet()
                t = kind & 0xF0
                if t == _PUBLISH:
                    await self._on_publish(kind, size)
                elif t == _PINGRESP:
                    self._pong = True
                elif t in (_PUBACK, _SUBACK) and size >= 2:
                    self._acks.append(struct.unpack_from("!H", self.rx, 0)[0])
                    if len(self._acks) > _RECENT:
                        self._acks.pop(0)
                    if t == _SUBACK and size >= 3:
                        self._granted = self.rx[2]
                    if self.on_ack is not None and (t == _PUBACK or self._granted != 0x80):
                        self.on_ack(self._acks[-1])
                else:
                    raise UplinkError("protocol: unexpected packet 0x%02x" % kind)
                self._event.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the connection is over; waiters get why
            self.error = str(e) or type(e).__name__
            self._event.set()
            if self.wake is not None:
                self.wake.set()

    async def _on_publish(self, kind, size):
        qos = (kind >> 1) & 3
        keep = size >= 0
        size = abs(size)
        tlen = struct.unpack_from("!H", self.rx, 0)[0]
        pos = 2 + tlen
        if qos > 1 or pos + (2 if qos else 0) > min(size, len(self.rx)):
            raise UplinkError("protocol: bad PUBLISH (qos %d, topic %d bytes)" % (qos, tlen))
        topic = bytes(self.rx[2:pos]).decode()
        pid = 0
        if qos:
            pid = struct.unpack_from("!H", self.rx, pos)[0]
            pos += 2
        # read_line reads the payload from rx, or from the stream when it did not fit.
        self._line_start = pos
        self._line_end = size if keep else pos
        if not (qos and kind & _DUP and pid in self._recent):
            if self.on_message is not None:
                payload = memoryview(self.rx)[pos:size] if keep else None
                await self.on_message(topic, payload, size - pos)
        if self._unread:
            await self._read_past()
        if qos:
            self._recent.append(pid)
            if len(self._recent) > _RECENT:
                self._recent.pop(0)
            # What the message asked for (a command's reply) is usually sent at once:
            # the PUBACK waits a moment to ride with it (publish), else goes alone. The reader
            # looks every _ACK_LOOK_MS rather than wait on an event with a timeout, which
            # would allocate for every command (a burst is when the heap is short).
            struct.pack_into("!H", self._ack, 2, pid)
            self._ack_due = True
            waited = 0
            while self._ack_due and waited < _ACK_RIDE_MS and self.error is None:
                await asyncio.sleep_ms(_ACK_LOOK_MS)
                waited += _ACK_LOOK_MS
            if self._ack_due:
                self._ack_due = False
                await self._send(self._ack)
