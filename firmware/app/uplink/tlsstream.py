# TLS over the modem's socket: an async byte stream with the same write(data) / read_into(buf)
# / close() / closed as the modem's Socket, so the MQTT client runs over either unchanged.
#
# The TLS engine never touches the network: MicroPython's `tls` wraps a _Pipe (an io.IOBase
# whose readinto/write only move bytes between two small buffers). When the engine has no
# input it says "would block" (None) instead of waiting, and this class awaits the modem
# socket for it: no call blocks the loop during an outage, and the modem model counts the
# encrypted bytes, as the air would. Under CPython the sim provides a `tls` with the same
# behaviour over CPython's ssl (sim/chip/cpython/mp_tls.py): one API on both interpreters.
#
# The handshake runs inside the first write (the MQTT CONNECT), bounded by HANDSHAKE_MS, so
# the client's Finished and the CONNECT leave in one modem send, and the credentials in the
# CONNECT go only to a broker whose certificate chains to /ca.pem and names mqtt_host.
import asyncio
import io
import time

import tls
from app.uplink import UplinkError
from micropython import const

CA_PATH = "/ca.pem"
HANDSHAKE_MS = 60000  # ClientHello to Finished over a slow LTE-M cell, retries included
_CHUNK = const(256)  # ciphertext taken from the modem socket per read
_OUT = const(512)  # ciphertext waiting to go: one record of a full MQTT send buffer (448)


class _Pipe(io.IOBase):
    # The engine's transport: readinto takes ciphertext the stream fed (None: none left,
    # which mbedTLS turns into WANT_READ), write keeps what it sends until the stream
    # flushes it (None when full: WANT_WRITE).
    def __init__(self):
        self.inb = None
        self.ipos = self.iend = 0
        self.out = bytearray(_OUT)
        self.olen = 0

    def readinto(self, buf):
        n = min(len(buf), self.iend - self.ipos)
        if n <= 0:
            return None
        buf[:n] = self.inb[self.ipos:self.ipos + n]
        self.ipos += n
        return n

    def write(self, buf):
        n = min(len(buf), _OUT - self.olen)
        if n <= 0:
            return None
        self.out[self.olen:self.olen + n] = buf[:n]
        self.olen += n
        return n

    def ioctl(self, req, arg):
        return 0  # close and poll: the modem socket is closed and awaited by TLSStream


def _context(ca):
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    # The default for a client context, said outright; the port's C type has the
    # attribute, its stub lacks it.
    ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore[attr-defined]
    ctx.load_verify_locations(ca)  # one DER certificate
    return ctx


class _Engine:
    def __init__(self, ctx, host):
        self.pipe = _Pipe()
        self.ssl = ctx.wrap_socket(self.pipe, server_hostname=host,
                                   do_handshake_on_connect=False)

    def feed(self, mv, n):
        # The first n bytes of mv, ciphertext for the engine to read.
        self.pipe.inb = mv
        self.pipe.ipos = 0
        self.pipe.iend = n

    def starved(self):
        return self.pipe.ipos >= self.pipe.iend

    def outgoing(self):
        return memoryview(self.pipe.out)[:self.pipe.olen]

    def sent(self):
        self.pipe.olen = 0

    def write(self, mv):
        return self.ssl.write(mv)

    def readinto(self, mv):
        return self.ssl.readinto(mv)

    def close(self):
        self.ssl.close()


def load_ca(path=CA_PATH):
    # The broker's CA certificate as DER: /ca.pem may hold PEM (as provisioning writes it) or
    # DER. MicroPython's tls takes one DER certificate, so only the first PEM block is used.
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise UplinkError("tls: no CA certificate at %s (mqtt_tls=1 needs one)" % path)
    begin = data.find(b"-----BEGIN CERTIFICATE-----")
    if begin < 0:
        if data[:1] != b"\x30":  # a DER certificate is an ASN.1 SEQUENCE
            raise UplinkError("tls: %s is neither a PEM nor a DER certificate" % path)
        return data
    import binascii

    begin += 27
    end = data.find(b"-----END", begin)
    if end < 0:
        raise UplinkError("tls: %s: PEM certificate without an END line" % path)
    try:
        return binascii.a2b_base64(data[begin:end].replace(b"\r", b"").replace(b"\n", b""))
    except ValueError:
        raise UplinkError("tls: %s: the PEM certificate is not valid base64" % path)


def context(ca):
    # The client context with the CA loaded (ca: DER). Made once, at boot, while the heap is
    # whole (it is one object of about 3 KB under MicroPython) and used for every connection.
    try:
        return _context(ca)
    except (OSError, ValueError) as e:
        raise UplinkError("tls: bad CA certificate: %s" % _why(e))


def _why(e):
    # mbedTLS reports certificate failures as ValueError("\n<reason>\n"), others as OSError
    # with its negative error code; the sim's tls under CPython as ssl.SSLError with a reason.
    text = str(e).strip()
    if not text and e.args:
        text = "error %s" % (e.args[0],)
    return text or type(e).__name__


class TLSStream:
    # ca: the CA certificate (DER), or a context() made with it.
    def __init__(self, sock, ca, host):
        self.sock = sock
        if isinstance(ca, (bytes, bytearray)):
            ca = context(ca)
        try:
            self._engine = _Engine(ca, host)
        except (OSError, ValueError) as e:
            raise UplinkError("tls: %s" % _why(e))
        # The engine reads its input from this view, made once: a view made per read would
        # stay alive until the next read, often an hour, wherever the heap had got to by then
        # (in the large free block, which it would split; docs/firmware.md, Heap).
        self._rx = memoryview(bytearray(_CHUNK))
        self._lock = asyncio.Lock()  # one writer at a time owns the outgoing ciphertext
        self._filling = False
        self._filled = asyncio.Event()
        self._eof = False
        self._deadline = time.ticks_add(time.ticks_ms(), HANDSHAKE_MS)
        self.handshaken = False

    @property
    def closed(self):
        return self.sock.closed

    async def write(self, data):
        mv = memoryview(data)
        done = 0
        async with self._lock:
            while done < len(mv):
                n = self._call(self._engine.write, mv[done:])
                if n is None:
                    await self._pump()
                else:
                    done += n
                    self.handshaken = True
            await self._flush()
        return done

    async def read_into(self, buf):
        # As the modem Socket's: the bytes copied into buf, 0 once the connection is over.
        mv = memoryview(buf)
        while True:
            n = self._call(self._engine.readinto, mv)
            if n is not None:
                return n
            if self._eof and self._engine.starved():
                return 0
            if len(self._engine.outgoing()):
                async with self._lock:
                    await self._flush()
            else:
                await self._pump()

    async def close(self):
        try:
            self._engine.close()
        finally:
            await self.sock.close()

    def _call(self, op, mv):
        try:
            return op(mv)
        except (OSError, ValueError) as e:
            if self.handshaken:
                raise UplinkError("tls: %s" % _why(e))
            raise UplinkError("tls: handshake failed: %s" % _why(e))

    async def _pump(self):
        # The engine cannot go on: send what it wrote, or wait for what it needs to read.
        if len(self._engine.outgoing()):
            await self._flush()
        elif self._engine.starved():
            if self._eof:
                raise UplinkError("tls: connection closed during the handshake")
            await self._fill()
        else:
            raise UplinkError("tls: the engine stalled with input left")

    async def _flush(self):
        out = self._engine.outgoing()
        if len(out):
            await self.sock.write(out)
            self._engine.sent()

    async def _fill(self):
        # Ciphertext from the modem socket into the engine; one task reads the socket at a
        # time, another that needs input waits for what that read brings.
        if self._filling:
            await self._filled.wait()
            return
        self._filling = True
        self._filled.clear()
        try:
            if self.handshaken:
                n = await self.sock.read_into(self._rx)
            else:
                left = time.ticks_diff(self._deadline, time.ticks_ms())
                if left <= 0:
                    raise UplinkError("tls: no handshake in %d ms" % HANDSHAKE_MS)
                try:
                    n = await asyncio.wait_for_ms(self.sock.read_into(self._rx), left)
                except asyncio.TimeoutError:
                    raise UplinkError("tls: no handshake in %d ms" % HANDSHAKE_MS)
        finally:
            self._filling = False
            self._filled.set()
        if n:
            self._engine.feed(self._rx, n)
        else:
            self._eof = True
