# MQTT client checks over a fake stream that records exact bytes and replays scripted broker
# bytes; runs on a virtual device under both interpreters.
import asyncio

from app import log as log_mod
from app.uplink import UplinkError
from app.uplink.mqtt import MQTTClient


class FakeStream:
    def __init__(self, incoming):
        self.sent = bytearray()
        self.writes = []  # each write's bytes: one write is one modem send, one segment
        self.incoming = bytearray(incoming)
        self.closed = False

    async def write(self, data):
        self.sent.extend(data)
        self.writes.append(bytes(data))
        return len(data)

    async def read_into(self, buf):
        if not self.incoming:
            await asyncio.sleep_ms(10)
            self.closed = True
            return 0
        n = min(len(buf), len(self.incoming), 7)  # small reads, as a modem gives them
        buf[:n] = self.incoming[:n]
        self.incoming = self.incoming[n:]
        return n

    async def close(self):
        self.closed = True


def client():
    return MQTTClient("dev-a", "dev-a", "pw", log_mod.Log(echo=False), bytearray(64),
                      bytearray(128))


async def check_connect_bytes():
    c = client()
    s = FakeStream(b"\x20\x02\x01\x00")
    present = await c.connect(s, 300, False, ("d/dev-a/s", "0", True))
    want = (b"\x10\x2a\x00\x04MQTT\x04\xec\x01\x2c\x00\x05dev-a\x00\x09d/dev-a/s\x00\x010"
            b"\x00\x05dev-a\x00\x02pw")
    await c.close()
    if bytes(s.sent) != want:
        print("sent", bytes(s.sent))
    return present is True and bytes(s.sent) == want


async def check_refused():
    c = client()
    try:
        await c.connect(FakeStream(b"\x20\x02\x00\x04"), 300)
    except UplinkError as e:
        return e.code == 4 and "bad user name or password" in str(e)
    return False


async def check_garbage():
    c = client()
    await c.connect(FakeStream(b"\x20\x02\x00\x00\xf7\x01\x02"), 300)
    try:
        await c.publish("d/dev-a/t", b"x", 1)
    except UplinkError as e:
        return "protocol: unexpected packet 0xf7" in str(e)
    return False


async def check_cut_mid_packet():
    c = client()
    await c.connect(FakeStream(b"\x20\x02\x00\x00\x30\x20\x00\x03abc"), 300)
    try:
        await c.ping()
    except UplinkError as e:
        return "closed by the broker" in str(e)
    return False


async def check_puback_and_oversized_command():
    c = client()
    got = []

    async def on_message(topic, payload, size):
        got.append((topic, None if payload is None else bytes(payload), size))

    c.on_message = on_message
    big = b"\x32\xd0\x01\x00\x09d/dev-a/c\x00\x07" + b"z" * 195  # 208 bytes: > rx of 64
    small = b"\x32\x10\x00\x09d/dev-a/c\x00\x08{}\x00"
    s = FakeStream(b"\x20\x02\x00\x00\x40\x02\x00\x01" + big + small)
    await c.connect(s, 300)
    await c.publish("d/dev-a/t", b"hi", 1)  # the PUBACK for pid 1 is in the stream
    await asyncio.sleep_ms(500)  # with nothing to ride, each PUBACK goes alone after 100 ms
    return (got == [("d/dev-a/c", None, 195), ("d/dev-a/c", b"{}\x00", 3)]
            and s.writes[-2:] == [b"\x40\x02\x00\x07", b"\x40\x02\x00\x08"]
            and c.oversized == 1)


async def check_puback_rides_with_the_reply():
    # A command's PUBACK goes in the same write as the reply published right after it: one
    # segment over the air instead of two.
    c = client()
    replies = []

    async def on_message(topic, payload, size):
        # As the uplink does: the reply is sent by another task, after this returns.
        replies.append(asyncio.create_task(c.publish("d/dev-a/r", b"ok", 1, wait=False)))

    c.on_message = on_message
    command = b"\x32\x10\x00\x09d/dev-a/c\x00\x07{}\x00"
    s = FakeStream(b"\x20\x02\x00\x00" + command)
    await c.connect(s, 300)
    await asyncio.sleep_ms(300)
    reply = b"\x32\x0f\x00\x09d/dev-a/r\x00\x01ok"
    return len(replies) == 1 and s.writes[1:] == [b"\x40\x02\x00\x07" + reply]

