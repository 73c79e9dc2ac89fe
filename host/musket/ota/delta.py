"""The delta of an update bundle (docs/ota.md, "The delta"): the operations that rebuild a new
image front to back from the base image the device runs. The device's side, which applies it,
is firmware/app/ota/delta.py.

The matcher is greedy: an index of every 16-byte window of the base finds where a stretch of
the new image came from; a match is extended forward, and backward into the literal bytes not
yet written out. A change that keeps its length (a constant, a word in a message) leaves the
rest of the image where it was, so the base offset that would continue the last copy is tried
first, with a shorter window: the few changed bytes become a short add between two copies.
"""

from __future__ import annotations

END = 0x00
COPY = 0x01
ADD = 0x02
VARINT_MAX = 5  # bytes; the format's longest varint (35 bits)

WINDOW = 16  # bytes of the base indexed at every offset: the shortest match the index finds
NEAR_WINDOW = 8  # bytes that must agree where the last copy would continue
# A copy costs its operation byte and two varints (5 to 7 bytes here) and splits the add around
# it (2 more); shorter matches stay literal bytes, which the zlib stream compresses anyway.
MIN_COPY = 10
_GALLOP = 64  # first step, in bytes, when comparing a match's extension slice by slice


def varint(value: int) -> bytes:
    """`value` as an unsigned LEB128 varint."""
    if value < 0 or value >= 1 << (7 * VARINT_MAX):
        raise ValueError(f"{value} does not fit a {VARINT_MAX}-byte varint")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def make_delta(base: bytes, new: bytes) -> bytes:
    """The operations that turn `base` into `new`, ending with END."""
    base, new = bytes(base), bytes(new)
    index = _index(base)
    ops = bytearray()
    pending = 0  # start of the new image's bytes not yet covered by an operation
    shift = None  # base offset minus new offset at the end of the last copy
    i = 0
    end = len(new)
    while i < end:
        found = None
        if shift is not None and 0 <= i + shift < len(base):
            near = i + shift
            if base[near:near + NEAR_WINDOW] == new[i:i + NEAR_WINDOW]:
                found = near
        if found is None:
            found = index.get(new[i:i + WINDOW])
        if found is None:
            i += 1
            continue
        ahead = _common_forward(base, found, new, i)
        back = _common_backward(base, found, new, i, i - pending)
        if ahead + back < MIN_COPY:
            i += 1
            continue
        start = i - back
        if start > pending:
            _add(ops, new[pending:start])
        ops += bytes([COPY]) + varint(found - back) + varint(ahead + back)
        i += ahead
        pending = i
        shift = found + ahead - i
    if pending < end:
        _add(ops, new[pending:])
    ops.append(END)
    return bytes(ops)


def _index(base: bytes) -> dict[bytes, int]:
    """Every WINDOW-byte slice of the base → its first offset."""
    return {base[j:j + WINDOW]: j for j in range(len(base) - WINDOW, -1, -1)}


def _add(ops: bytearray, data: bytes) -> None:
    ops += bytes([ADD]) + varint(len(data)) + data


def _common_forward(a: bytes, ai: int, b: bytes, bi: int) -> int:
    """How many bytes a[ai:] and b[bi:] share at their start."""
    return _gallop(min(len(a) - ai, len(b) - bi),
                   lambda n, s: a[ai + n:ai + n + s] == b[bi + n:bi + n + s])


def _common_backward(a: bytes, ai: int, b: bytes, bi: int, most: int) -> int:
    """How many bytes (at most `most`) a[:ai] and b[:bi] share at their end."""
    return _gallop(min(ai, bi, most), lambda n, s: a[ai - n - s:ai - n] == b[bi - n - s:bi - n])


def _gallop(limit: int, same) -> int:
    """The longest n <= limit for which same(0, n) holds, found slice by slice: same(n, s)
    says whether the s bytes after the first n agree. Steps double while they do, halve when
    they do not."""
    n, step = 0, _GALLOP
    while n < limit:
        s = min(step, limit - n)
        if same(n, s):
            n += s
            step *= 2
        elif s == 1:
            break
        else:
            step = s // 2
    return n
