"""The device side of bench/ota_verify.py: runs under MicroPython, in a working folder that
holds case.bin (a 32-byte public key, a 64-byte signature, then the message).

Prints `TIMES <us> ...` (one verify each) and `NEEDS <bytes>`: the least free heap (as
gc.mem_free() reports it, right before the call) in which a verify completed. The free heap
is cut down with ballast (bytearrays held in a list made beforehand) to each size a search
tries; a verify that runs out raises MemoryError, the ballast goes, the next size is tried.
A MemoryError comes only after a full collection found no room, so what this finds is the
verify's peak of live heap, fragmentation included, not the sum of what it allocates.
"""

import gc
import time

from app.ota import ed25519

_CHUNKS = (4096, 512, 64, 1)  # ballast sizes, largest first, to come close to the target
_BALLAST_SLOTS = 400
_RESOLUTION = 256  # bytes: the search stops when the bounds are this close
_STEPS = 24  # at most this many tries: ballast lands only near a target, so bounds may stall


def _load():
    with open("case.bin", "rb") as f:
        data = f.read()
    return data[:32], data[96:], data[32:96]


def _verify_with_free(case, target, ballast):
    # True if a verify completes with about `target` bytes free (no ballast for a target of
    # 0); the free heap it had.
    gc.collect()
    slot = 0
    for chunk in _CHUNKS if target else ():
        while gc.mem_free() - target > chunk + 64 and slot < _BALLAST_SLOTS:
            try:
                ballast[slot] = bytearray(chunk)
            except MemoryError:
                break  # no run of free blocks that long left: go on with smaller chunks
            slot += 1
    gc.collect()
    free = gc.mem_free()
    try:
        ok = ed25519.verify(*case)
    except MemoryError:
        ok = False
    for i in range(slot):
        ballast[i] = None
    return ok, free


def main(runs):
    case = _load()
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.ticks_us()
        ok = ed25519.verify(*case)
        times.append(time.ticks_diff(time.ticks_us(), start))
        if not ok:
            raise SystemExit("the benchmark's signature did not verify")
    print("TIMES", " ".join(str(t) for t in times))

    ballast = [None] * _BALLAST_SLOTS
    gc.collect()
    # low: a free heap a verify ran out in (0 at first); high: one a verify completed in.
    ok, high = _verify_with_free(case, 0, ballast)  # no ballast: the whole heap
    if not ok:
        raise SystemExit("no verify completed")
    low = 0
    for _ in range(_STEPS):
        if high - low <= _RESOLUTION:
            break
        ok, free = _verify_with_free(case, (low + high) // 2, ballast)
        if ok:
            high = min(high, free)
        else:
            low = max(low, free)
    print("NEEDS", high)
