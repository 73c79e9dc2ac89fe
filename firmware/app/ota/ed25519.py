"""Ed25519 signature verification (RFC 8032, section 5.1.7: pure Ed25519, no context, no
prehash), for the signature of an update bundle (docs/ota.md, "Signatures").

    ed25519.verify(public_key, message, signature)  # True or False, never raises

It checks the cofactorless equation [S]B == R + [k]A, not the cofactored [8][S]B == [8]R +
[8][k]A that RFC 8032 also allows: the equation OpenSSL's verifier checks, which the host's
`cryptography` package uses, so the host and the device agree on what a signer made. It
rejects a key or signature of the wrong length, a non-canonical S (S >= L), and an A or R
that does not decode to a curve point (y >= p, no square root, x = 0 with the sign bit set).

Not constant time, and it need not be: a verifier handles only public data (the key, the
bundle, its signature), so its timing leaks nothing secret.

Points are extended twisted Edwards coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z,
with RFC 8032's formulas (5.1.4), which need no inversion; the field is Python's big ints
(MicroPython's mpz) reduced mod p after each product. The two scalar products are one joint
double-and-add (Shamir's trick): 253 doublings and about 190 additions, some 4,000 products
of 255-bit numbers, each reduced mod p. Then there is the SHA-512 of R, A and the message:
one 128-byte block per 128 bytes of message. The live heap stays small: a few points (four
255-bit ints each) and the hash's state. bench/ota_verify.py measures both on MicroPython.
"""

from app.ota.sha512 import Sha512
from micropython import const

_KEY_BYTES = const(32)
_SIGNATURE_BYTES = const(64)
_P = const(2**255 - 19)  # the field's prime
_L = const(2**252 + 27742317777372353535851937790883648493)  # the order of B
# d = -121665 / 121666 mod p (the curve: -x^2 + y^2 = 1 + d x^2 y^2), and 2d for additions.
_D = const(37095705934669439343138083508754565189542113879843219016388785533085940283555)
_D2 = const(16295367250680780974490674513165176452449235426866156013048779062215315747161)
_SQRT_M1 = const(19681161376707505956807079304988542015446066515923890162744021073123829784752)
# The base point B: y = 4/5 mod p, x even.
_BX = const(15112221349535400772501151409588531511454012693041857206046113283949847762202)
_BY = const(46316835694926478169428394003475163141307993866256225615783033603165251855960)
_SQRT_POWER = const(2**252 - 3)  # (p - 5) / 8, the power that takes a square root (5.1.3)
_SCALAR_BITS = const(253)  # S < L and k < L, both below 2**253


def _add(p, q):
    # P + Q (RFC 8032, 5.1.4; complete on this curve: it also doubles and adds the identity).
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * _D2 * t2 % _P
    d = 2 * z1 * z2 % _P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _double(p):
    # 2P (RFC 8032, 5.1.4): eight products, four of them squarings, where _add takes nine.
    x, y, z, _ = p
    a = x * x % _P
    b = y * y % _P
    c = 2 * z * z % _P
    h = a + b
    e = h - (x + y) * (x + y)
    g = a - b
    f = c + g
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _decode(encoding):
    # The point a 32-byte encoding names (RFC 8032, 5.1.3), or None if it names none.
    y = int.from_bytes(encoding, "little")
    x_is_odd = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    yy = y * y % _P
    u = (yy - 1) % _P
    v = (_D * yy + 1) % _P
    # x = sqrt(u / v) = u v^3 (u v^7)^((p - 5) / 8), without an inversion.
    v3 = v * v * v % _P
    x = u * v3 * pow(u * v3 * v3 * v % _P, _SQRT_POWER, _P) % _P
    vxx = v * x * x % _P
    if vxx != u:
        if vxx != _P - u:
            return None  # u / v is not a square: no x
        x = x * _SQRT_M1 % _P
    if x == 0 and x_is_odd:
        return None  # -0: an encoding no signer makes
    if x & 1 != x_is_odd:
        x = _P - x
    return (x, y, 1, x * y % _P)


def _bytes_like(value):
    return isinstance(value, (bytes, bytearray, memoryview))


def verify(public_key, message, signature):
    """True if `signature` (64 bytes) is `public_key`'s (32 bytes) Ed25519 signature of
    `message` (bytes, bytearray or memoryview); False for anything else, malformed input
    included."""
    if not (_bytes_like(public_key) and _bytes_like(message) and _bytes_like(signature)):
        return False
    if len(public_key) != _KEY_BYTES or len(signature) != _SIGNATURE_BYTES:
        return False
    public_key = bytes(public_key)
    r_bytes = bytes(signature[:32])
    s = int.from_bytes(bytes(signature[32:]), "little")
    if s >= _L:
        return False  # S + L would pass the equation too: only the canonical S is accepted
    a = _decode(public_key)
    r = _decode(r_bytes)
    if a is None or r is None:
        return False
    h = Sha512(r_bytes)
    h.update(public_key)
    h.update(message)
    k = int.from_bytes(h.digest(), "little") % _L
    # [S]B == R + [k]A, computed as [S]B + [k](-A) == R so one pass covers both products.
    return _equal(_combine(s, k, (_P - a[0], a[1], a[2], _P - a[3])), r)


def _combine(s, k, minus_a):
    # [s]B + [k](-A): double once per bit of the two scalars, add B, -A or B - A as the bits
    # of s and k say.
    base = (_BX, _BY, 1, _BX * _BY % _P)
    addends = (None, base, minus_a, _add(base, minus_a))
    q = (0, 1, 1, 0)  # the identity
    for i in range(_SCALAR_BITS - 1, -1, -1):
        q = _double(q)
        pick = (s >> i & 1) | (k >> i & 1) << 1
        if pick:
            q = _add(q, addends[pick])
    return q


def _equal(p, q):
    # x1 / z1 == x2 / z2 and y1 / z1 == y2 / z2, without inversions.
    return ((p[0] * q[2] - q[0] * p[2]) % _P == 0
            and (p[1] * q[2] - q[1] * p[2]) % _P == 0)
