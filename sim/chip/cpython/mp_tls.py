"""MicroPython's `tls` module for firmware running under CPython, on CPython's `ssl`.

The firmware uses one TLS API on both interpreters: `tls.SSLContext(PROTOCOL_TLS_CLIENT)`,
`load_verify_locations(<one DER certificate>)`, `verify_mode` and `wrap_socket(stream,
server_hostname=..., do_handshake_on_connect=False)` over a stream object of its own whose
`readinto`/`write` return None when they would block (app/uplink/tlsstream.py's pipe). This
stand-in keeps MicroPython's behaviour over such a stream (extmod/modtls_mbedtls.c with
mbedTLS's non-blocking I/O): the engine is an `ssl.SSLObject` over two `MemoryBIO`s, and every
call first gives the stream the ciphertext still waiting, then takes in all the ciphertext the
stream has, then runs. A call that cannot finish returns None (mbedTLS's WANT_READ /
WANT_WRITE), a write whose record the stream has not taken in full returns None until it has
and then its length, as mbedTLS's does; the end of the peer's data (close_notify) reads as 0.
Failures are CPython's `ssl.SSLError` (an OSError) and `ssl.SSLCertVerificationError` (also a
ValueError), where mbedTLS raises OSError and ValueError: the firmware catches both.
"""

from __future__ import annotations

import ssl

PROTOCOL_TLS_CLIENT = 0
PROTOCOL_TLS_SERVER = 1
PROTOCOL_DTLS_CLIENT = 2
PROTOCOL_DTLS_SERVER = 3
CERT_NONE = 0
CERT_OPTIONAL = 1
CERT_REQUIRED = 2
MBEDTLS_VERSION = "CPython ssl, " + ssl.OPENSSL_VERSION

_VERIFY = {CERT_NONE: ssl.CERT_NONE, CERT_OPTIONAL: ssl.CERT_OPTIONAL,
           CERT_REQUIRED: ssl.CERT_REQUIRED}
_CHUNK = 512  # ciphertext taken from the stream per readinto


class SSLContext:
    def __init__(self, protocol):
        if protocol != PROTOCOL_TLS_CLIENT:
            # The virtual device is only ever a TLS client.
            raise ValueError("the sim's tls supports PROTOCOL_TLS_CLIENT only")
        # As mbedTLS's client: the chain is verified, and the name too when one is given.
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._verify_mode = CERT_REQUIRED

    @property
    def verify_mode(self):
        return self._verify_mode

    @verify_mode.setter
    def verify_mode(self, mode):
        if mode not in _VERIFY:
            raise ValueError("bad verify_mode %r" % (mode,))
        self._ctx.check_hostname = mode == CERT_REQUIRED
        self._ctx.verify_mode = _VERIFY[mode]
        self._verify_mode = mode

    def load_verify_locations(self, cadata):
        # One certificate, DER (MicroPython's takes the data, not a file name).
        self._ctx.load_verify_locations(cadata=bytes(cadata))

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    server_hostname=None):
        if server_side:
            raise ValueError("the sim's tls supports client sockets only")
        wrapped = SSLSocket(self._ctx, sock, server_hostname)
        if do_handshake_on_connect:
            wrapped.do_handshake()
        return wrapped


class SSLSocket:
    def __init__(self, ctx, sock, server_hostname):
        self._sock = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_hostname=server_hostname)
        self._pending = b""  # ciphertext the stream has not taken yet
        self._written = None  # a write's length, held until its record is all with the stream
        self._chunk = bytearray(_CHUNK)

    def do_handshake(self):
        # As far as it goes without waiting: the first read or write goes on with it.
        self._call(self._obj.do_handshake)

    def write(self, buf):
        if self._written is not None:
            if not self._give():
                return None
            n, self._written = self._written, None
            return n
        n = self._call(self._obj.write, buf)
        if n is not None and self._pending:
            self._written = n
            return None
        return n

    def readinto(self, buf, nbytes=None):
        mv = memoryview(buf)
        if nbytes is not None:
            mv = mv[:nbytes]
        return self._call(self._obj.read, len(mv), mv)

    def read(self, n=-1):
        buf = bytearray(n if n > 0 else _CHUNK)
        got = self.readinto(buf)
        return None if got is None else bytes(buf[:got])

    def close(self):
        self._in.write_eof()
        self._sock.close()

    def _call(self, op, *args):
        if not self._give():
            return None
        self._take()
        try:
            result = op(*args)
        except ssl.SSLWantReadError:
            self._give()
            return None
        except ssl.SSLZeroReturnError:
            return 0
        self._give()
        return result

    def _give(self):
        # Ciphertext from the engine to the stream; True once the stream has all of it.
        if not self._pending:
            self._pending = self._out.read()
        while self._pending:
            n = self._sock.write(self._pending)
            if not n:
                return False
            self._pending = self._pending[n:]
            if not self._pending:
                self._pending = self._out.read()
        return True

    def _take(self):
        # Ciphertext from the stream to the engine: all it has now.
        while True:
            n = self._sock.readinto(self._chunk)
            if n is None:
                return
            if n == 0:
                self._in.write_eof()
                return
            self._in.write(bytes(self._chunk[:n]))
