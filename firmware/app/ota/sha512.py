"""SHA-512 (FIPS 180-4) in plain Python, for the Ed25519 check of update bundles (ed25519.py).

MicroPython's `hashlib` has no sha512 on the ESP32 and unix ports, and Ed25519 hashes with
nothing else. The simulator runs this same code under CPython (never CPython's hashlib), so
what the tests exercise there is what the device runs.

A 64-bit word is a Python int. On the ESP32 (and above 2**62 on 64-bit ports) that is a big
int on the heap, so a 128-byte block costs a few thousand short-lived allocations (its 80
rounds) but little live heap: the state, a 16-word window of the schedule, a 128-byte
buffer. Bits beyond 64 are cut once per sum rather than after every shift: a sum's low 64
bits do not depend on the higher bits of its terms.

    h = Sha512(b"first part")
    h.update(memoryview(rest))  # stream: any number of updates
    h.digest()                  # 64 bytes; h can go on taking updates
"""

import struct

from micropython import const

_BLOCK = const(128)
_LENGTH_FIELD = const(16)  # the message length in bits, a 128-bit big-endian integer
_ROUNDS = const(80)  # per block, each taking one word of the message schedule
_MASK = const(0xFFFFFFFFFFFFFFFF)

# FIPS 180-4, 4.2.3: the first 64 bits of the fractional parts of the cube roots of the
# first 80 primes.
_K = (
    0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
    0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
    0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
    0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
    0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
    0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
    0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
    0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
    0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
    0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
    0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
    0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
    0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
    0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
)

# FIPS 180-4, 5.3.5: the initial hash value, from the square roots of the first 8 primes.
_H0 = (
    0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
    0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
)


def _compress(state, w, data, offset):
    # One block (data[offset:offset + 128]) into `state` (8 words, updated in place). `w` is
    # the caller's 16-word list for the message schedule (FIPS 180-4, 6.4.2), kept as a
    # rolling window: word i lives in w[i % 16], which word i - 16 has left.
    w[0:16] = struct.unpack_from(">16Q", data, offset)
    a, b, c, d, e, f, g, h = state
    for i in range(_ROUNDS):
        if i >= 16:
            x = w[(i - 15) & 15]
            y = w[(i - 2) & 15]
            w[i & 15] = (w[i & 15] + w[(i - 7) & 15]
                         + ((x >> 1 | x << 63) ^ (x >> 8 | x << 56) ^ x >> 7)
                         + ((y >> 19 | y << 45) ^ (y >> 61 | y << 3) ^ y >> 6)) & _MASK
        t1 = (h + ((e >> 14 | e << 50) ^ (e >> 18 | e << 46) ^ (e >> 41 | e << 23))
              + (g ^ (e & (f ^ g))) + _K[i] + w[i & 15])
        t2 = (((a >> 28 | a << 36) ^ (a >> 34 | a << 30) ^ (a >> 39 | a << 25))
              + ((a & b) | (c & (a | b))))
        h = g
        g = f
        f = e
        e = (d + t1) & _MASK
        d = c
        c = b
        b = a
        a = (t1 + t2) & _MASK
    for i, v in enumerate((a, b, c, d, e, f, g, h)):
        state[i] = (state[i] + v) & _MASK


class Sha512:
    def __init__(self, data=b""):
        self._state = list(_H0)
        self._schedule = [0] * 16
        self._buffer = bytearray(_BLOCK)  # the start of a block that later data completes
        self._buffered = 0
        self._length = 0  # bytes hashed so far
        self.update(data)

    def update(self, data):
        data = memoryview(data)  # slices of it copy nothing
        size = len(data)
        self._length += size
        start = 0
        if self._buffered:
            start = min(_BLOCK - self._buffered, size)
            self._buffer[self._buffered:self._buffered + start] = data[:start]
            self._buffered += start
            if self._buffered < _BLOCK:
                return
            _compress(self._state, self._schedule, self._buffer, 0)
            self._buffered = 0
        # Whole blocks straight from the caller's buffer; only a tail is copied.
        while size - start >= _BLOCK:
            _compress(self._state, self._schedule, data, start)
            start += _BLOCK
        self._buffered = size - start
        self._buffer[:self._buffered] = data[start:]

    def digest(self):
        # Pads a copy of the state, so the hash can go on (as CPython's hashlib allows).
        state = list(self._state)
        tail = bytearray(2 * _BLOCK)
        tail[:self._buffered] = self._buffer[:self._buffered]
        tail[self._buffered] = 0x80
        # The 0x80 and the length field fit after up to 111 buffered bytes; more need a block.
        end = _BLOCK if self._buffered < _BLOCK - _LENGTH_FIELD else 2 * _BLOCK
        struct.pack_into(">QQ", tail, end - _LENGTH_FIELD, self._length >> 61,
                         (self._length << 3) & _MASK)
        for offset in range(0, end, _BLOCK):
            _compress(state, self._schedule, tail, offset)
        return struct.pack(">8Q", *state)
