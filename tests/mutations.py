"""Edits of a byte string the way a new firmware version edits its image: bytes changed in
place, inserted, deleted, stretches copied from elsewhere. For the delta's tests."""

from __future__ import annotations

import random


def edited(data: bytes, rng: random.Random, edits: int) -> bytes:
    out = bytearray(data)
    for _ in range(edits):
        at = rng.randrange(len(out) + 1)
        kind = rng.randrange(4)
        if kind == 0:
            out[at:at + 4] = rng.randbytes(4)
        elif kind == 1:
            out[at:at] = rng.randbytes(rng.randrange(1, 100))
        elif kind == 2:
            del out[at:at + rng.randrange(1, 300)]
        else:
            src = rng.randrange(len(out) + 1)
            out[at:at] = out[src:src + rng.randrange(1, 500)]
    return bytes(out)
