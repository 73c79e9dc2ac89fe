# The delta of an update bundle (docs/ota.md, "The delta"): operations that rebuild the new
# image front to back from the image the device runs. The device applies it while the payload
# streams in, reading the base image from the slot it runs from and writing the new one to the
# other slot, every byte through the one buffer the caller gives: RAM use does not grow with
# the image. Whatever `out` holds when a malformed delta is found is to be thrown away: the
# caller hashes what was written and switches slots only when it is the image the manifest names.
from micropython import const

_END = const(0x00)  # the image is complete
_COPY = const(0x01)  # base offset, length (varints): copy those base bytes
_ADD = const(0x02)  # length (varint), then that many literal bytes
_VARINT_MAX = const(5)  # bytes in the longest varint the format allows


class _Ops:
    # The operation stream: single bytes and varints from `source`, which has readinto(buf)
    # (a file, deflate.DeflateIO) or read(n).

    def __init__(self, source):
        self._into = getattr(source, "readinto", None)
        self._read = source.read
        self._one = memoryview(bytearray(1))

    def fill(self, mv):
        # Fills `mv` from the stream; returns how many bytes it got (fewer only at its end).
        return fill(self._into, mv, self._read)

    def ended(self):
        return not self.fill(self._one)

    def byte(self, what):
        if self.fill(self._one) != 1:
            raise ValueError("delta: truncated in %s" % what)
        return self._one[0]

    def varint(self, what):
        # An unsigned LEB128 varint of at most _VARINT_MAX bytes.
        value = 0
        for i in range(_VARINT_MAX):
            b = self.byte(what)
            value |= (b & 0x7F) << (7 * i)
            if b < 0x80:
                return value
        raise ValueError("delta: %s: varint longer than %d bytes" % (what, _VARINT_MAX))


def fill(readinto, mv, read=None):
    # Reads into all of `mv` with readinto(mv) (or read(n) when readinto is None), which may
    # return fewer bytes than asked; returns the count, short only at the stream's end.
    want = len(mv)
    got = 0
    while got < want:
        part = mv[got:] if got else mv
        if readinto is not None:
            n = readinto(part) or 0
        else:
            data = read(want - got)
            n = len(data) if data else 0
            part[:n] = data
        if not n:
            break
        got += n
    return got


def apply(source, base, out, buf, image_size, base_size=None):
    # Rebuilds the image from the delta's operations read from `source`: base bytes through
    # base.seek(offset) and base.readinto(memoryview), every byte written as out.write(memoryview)
    # of `buf`. `image_size`: the manifest's image.size; `base_size`: its base.size (without it
    # a copy is checked only against what `base` can read). Returns the bytes written; raises
    # ValueError for a malformed delta.
    mv = memoryview(buf)
    size = len(mv)
    if not size:
        raise ValueError("delta: the buffer is empty")
    ops = _Ops(source)
    base_into = base.readinto
    written = 0
    while True:
        op = ops.byte("an operation")
        if op == _END:
            break
        if op == _COPY:
            offset = ops.varint("a copy's offset")
            length = ops.varint("a copy's length")
            if base_size is not None and offset + length > base_size:
                raise ValueError("delta: copy of %d bytes at %d is outside the base (%d bytes)"
                                 % (length, offset, base_size))
        elif op == _ADD:
            length = ops.varint("an add's length")
        else:
            raise ValueError("delta: unknown operation 0x%02x after %d bytes of output"
                             % (op, written))
        if length > image_size - written:
            raise ValueError("delta: output longer than the image (%d bytes)" % image_size)
        if op == _COPY:
            base.seek(offset)
        while length:
            n = size if length >= size else length
            chunk = mv if n == size else mv[:n]
            if op == _COPY:
                if fill(base_into, chunk) != n:
                    raise ValueError("delta: copy at %d is outside the base" % offset)
                offset += n
            elif ops.fill(chunk) != n:
                raise ValueError("delta: truncated in an add's bytes")
            out.write(chunk)
            written += n
            length -= n
    if not ops.ended():
        raise ValueError("delta: bytes after the end")
    if written != image_size:
        raise ValueError("delta: rebuilt %d bytes, the image has %d" % (written, image_size))
    return written
