"""MicroPython's `deflate` module (decompression), for firmware run by CPython.

MicroPython's `deflate.DeflateIO(stream, format=AUTO, wbits=0, close=False, /)` wraps a blocking
stream and inflates it as it is read: `read`, `readinto`, `readline`, `close`, and a context
manager. This stand-in does the same over CPython's zlib, with the port's behaviour where the
firmware could see a difference (measured against the MicroPython unix port):

- `format`: AUTO (zlib or gzip, told apart by the first bytes), RAW, ZLIB, GZIP; anything
  else raises ValueError("format"). `wbits` 5..15, or 0; else ValueError("wbits").
- The window: `wbits`, or for 0 the zlib header's (ZLIB), 256 bytes (RAW), 32 KB (GZIP). A
  zlib header that names a larger window than `wbits` is accepted, and a back-reference
  farther than the window fails, as on the port (the header is rewritten to `wbits` before
  CPython's zlib sees it). zlib cannot inflate with a window under 256 bytes: `wbits` 5..7
  act as 8 here.
- Damaged data raises OSError(EINVAL); input that ends inside the stream, EOFError; a read
  after `close`, OSError(EINVAL).
- The port reads its input a byte at a time; this reads ahead in chunks of 256 bytes, and at
  the compressed stream's end seeks `stream` back to just after it (when it can seek), so
  what follows the stream is where the port would leave it.

Compression (`write`) is not here: the ESP32 port's build has decompression only.
"""

import errno
import zlib

AUTO = 0
RAW = 1
ZLIB = 2
GZIP = 3

_CHUNK = 256  # bytes read from the stream at a time
_GZIP_MAGIC = b"\x1f\x8b"


def _invalid():
    return OSError(errno.EINVAL, "EINVAL")


class DeflateIO:
    def __init__(self, stream, format=AUTO, wbits=0, close=False, /):
        if format not in (AUTO, RAW, ZLIB, GZIP):
            raise ValueError("format")
        if wbits and not 5 <= wbits <= 15:
            raise ValueError("wbits")
        self._stream = stream
        self._format = format
        self._wbits = wbits
        self._close_stream = close
        self._inflater = None
        self._closed = False

    # --- the stream ---------------------------------------------------------------------

    def read(self, size=-1):
        self._check_open()
        if size is None or size < 0:
            parts = []
            while True:
                part = self._inflate(1 << 16)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        out = bytearray()
        while len(out) < size:
            part = self._inflate(size - len(out))
            if not part:
                break
            out += part
        return bytes(out)

    def readinto(self, buf):
        self._check_open()
        view = memoryview(buf).cast("B")
        got = 0
        while got < len(view):
            part = self._inflate(len(view) - got)
            if not part:
                break
            view[got:got + len(part)] = part
            got += len(part)
        return got

    def readline(self, size=-1):
        self._check_open()
        out = bytearray()
        while size is None or size < 0 or len(out) < size:
            part = self._inflate(1)
            if not part:
                break
            out += part
            if part == b"\n":
                break
        return bytes(out)

    def close(self):
        if not self._closed and self._close_stream:
            self._stream.close()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- inside ---------------------------------------------------------------------------

    def _check_open(self):
        if self._closed:
            raise _invalid()

    def _inflate(self, most):
        # Up to `most` inflated bytes; b"" at the stream's end.
        if self._inflater is None:
            self._start()
        z = self._inflater
        while True:
            if z.eof:
                return b""
            data = z.unconsumed_tail or self._stream.read(_CHUNK)
            if not data:
                raise EOFError()
            try:
                out = z.decompress(data, most)
            except zlib.error:
                raise _invalid() from None
            if z.eof and z.unused_data:
                self._give_back(len(z.unused_data))
            if out:
                return out

    def _give_back(self, count):
        # Leaves the stream just after the compressed data, as the port's byte-wise reads do.
        seek = getattr(self._stream, "seek", None)
        if seek is not None:
            seek(-count, 1)

    def _start(self):
        fmt, head = self._format, b""
        if fmt in (AUTO, ZLIB):
            head = self._read_exactly(2)
            if fmt == AUTO:
                fmt = GZIP if head == _GZIP_MAGIC else ZLIB
        if fmt == ZLIB:
            head = self._zlib_header(head)
            window = self._wbits or (head[0] >> 4) + 8
            self._inflater = zlib.decompressobj(max(window, 8))
        elif fmt == RAW:
            self._inflater = zlib.decompressobj(-max(self._wbits or 8, 8))
        else:
            self._inflater = zlib.decompressobj(16 + max(self._wbits or 15, 8))
        if head:
            try:
                self._inflater.decompress(head)
            except zlib.error:
                raise _invalid() from None

    def _zlib_header(self, head):
        # RFC 1950: CMF (method 8, window 2**(CINFO+8)) and FLG, a multiple of 31 together.
        cmf, flg = head[0], head[1]
        if cmf & 0x0F != 8 or (cmf << 8 | flg) % 31 or flg & 0x20:
            raise _invalid()
        if self._wbits and (cmf >> 4) + 8 > self._wbits:
            # The port inflates with the window it was given: so does zlib, told so here.
            cmf = (max(self._wbits, 8) - 8) << 4 | 8
            flg &= 0xE0
            flg |= 31 - (cmf << 8 | flg) % 31 if (cmf << 8 | flg) % 31 else 0
        return bytes((cmf, flg))

    def _read_exactly(self, n):
        data = b""
        while len(data) < n:
            more = self._stream.read(n - len(data))
            if not more:
                raise EOFError()
            data += more
        return data
