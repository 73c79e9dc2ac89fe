# A TLS handshake with app.uplink.tlsstream under the real MicroPython, straight over a socket,
# with only `free` bytes of the MicroPython heap left (the rest taken by ballast)
# (tests/uplink/test_tls.py). Usage: tls_handshake.py PORT CA_PEM_PATH FREE.
import asyncio
import gc
import sys

from app.uplink.tlsstream import TLSStream, load_ca


class Sock:
    closed = False

    def __init__(self, r, w):
        self.r, self.w = r, w

    async def write(self, data):
        self.w.write(data)
        await self.w.drain()

    async def read_into(self, buf):
        return await self.r.readinto(buf)

    async def close(self):
        self.w.close()


async def main(port, ca, free):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    ca = load_ca(ca)
    gc.collect()
    room = bytearray(free)  # kept in one piece, as the sim keeps the firmware's share
    ballast = [None] * 2048  # type: list  # a flat list: a deep chain would slow each collection
    piece = 4096
    i = 0
    while piece >= 16 and i < len(ballast):
        try:
            ballast[i] = bytearray(piece)
            i += 1
        except MemoryError:
            piece //= 2
    del room  # the room it kept goes back to the heap in one piece
    gc.collect()
    print("free", gc.mem_free())
    t = TLSStream(Sock(r, w), ca, "localhost")
    await t.write(bytes.fromhex("100c00044d5154540402003c0000"))  # CONNECT, no password
    buf = bytearray(4)
    n = 0
    while n < 4:
        got = await t.read_into(memoryview(buf)[n:])
        if not got:
            raise OSError("the broker closed the connection")
        n += got
    print("connack", bytes(buf).hex())
    # The engine's input after the handshake's reads: the stream's one view, not one made per
    # read (which would live on until the next read, wherever the heap had got to).
    print("input view kept", t._engine.pipe.inb is t._rx)
    await t.close()
    await t.close()  # as the modem's socket, closing twice is no error
    print("closed twice")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
