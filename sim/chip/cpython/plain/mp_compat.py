"""MicroPython's extra names in `asyncio` and `time`, added to CPython's own modules on the real
clock, for host processes that run firmware modules outside the virtual device (the swarm of
lightweight devices, musket_sim.swarm).

The virtual device has its own `asyncio` and `time` on the virtual clock (sim/chip/); a host
process that runs the firmware's MQTT client over real sockets needs only the few names the
firmware uses beyond CPython's: ``asyncio.wait_for_ms`` and ``time.ticks_ms / ticks_add /
ticks_diff`` (ticks wrap as on the ESP32 port, at 2**30 ms).
"""

import asyncio
import time

_TICKS_PERIOD = 1 << 30
_TICKS_HALF = _TICKS_PERIOD // 2


def _ticks_ms():
    return int(time.monotonic() * 1000) & (_TICKS_PERIOD - 1)


def _ticks_add(ticks, delta):
    return (ticks + delta) & (_TICKS_PERIOD - 1)


def _ticks_diff(end, start):
    return ((end - start + _TICKS_HALF) & (_TICKS_PERIOD - 1)) - _TICKS_HALF


async def _wait_for_ms(awaitable, timeout_ms):
    return await asyncio.wait_for(awaitable, timeout_ms / 1000)


def install():
    """Adds the names once; CPython's own behaviour is left as it is."""
    for name, value in (("ticks_ms", _ticks_ms), ("ticks_add", _ticks_add),
                        ("ticks_diff", _ticks_diff)):
        if not hasattr(time, name):
            setattr(time, name, value)
    if not hasattr(asyncio, "wait_for_ms"):
        asyncio.wait_for_ms = _wait_for_ms
