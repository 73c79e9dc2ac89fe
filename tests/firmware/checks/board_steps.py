# Steps on the virtual board itself (tests/firmware/test_device.py): the clock, the watchdog,
# deep sleep, RTC memory, NVS, the heap and the random source, each called by a one-line
# script; each prints what the test checks as "TAG value".
import asyncio
import gc
import os
import time

import esp32
import machine


async def _nap(ms):
    await asyncio.sleep_ms(ms)


async def _naps():
    await asyncio.gather(_nap(3600000), _nap(1500))
    await asyncio.sleep_ms(250)


def clock():
    """An hour's sleep beside a shorter one, then a quarter second more."""
    t0 = time.ticks_ms()
    w0 = time.time()
    asyncio.run(_naps())
    print("ELAPSED", time.ticks_diff(time.ticks_ms(), t0), time.time() - w0)


def starve_the_watchdog():
    machine.WDT(timeout=5000)
    time.sleep(30)
    print("AWAKE")


def deepsleep_a_minute():
    machine.deepsleep(60000)


def rtc_keep_and_reset():
    machine.RTC().memory(b"kept")
    machine.reset()


def rtc_show():
    print("RTC", machine.RTC().memory())


def rtc_write_then_flash():
    """RTC memory written, then a flash write (where the test cuts the power)."""
    machine.RTC().memory(b"lost")
    with open("f", "w") as f:
        f.write("x")


def nvs_write():
    nvs = esp32.NVS("musket")
    nvs.set_i32("kept", 42)
    nvs.commit()
    nvs.set_i32("dropped", 7)  # never committed


def nvs_read():
    nvs = esp32.NVS("musket")
    try:
        dropped = nvs.get_i32("dropped")
    except OSError:
        dropped = None
    print("NVS", nvs.get_i32("kept"), dropped)


def heap():
    """The free heap in KiB, and whether 80 KiB more can be had."""
    gc.collect()
    print("FREE", gc.mem_free() // 1024)
    try:
        big = bytearray(80 * 1024)
        print("ALLOCATED", len(big))
    except MemoryError:
        print("MEMORYERROR")


def random_bytes():
    print("RANDOM", os.urandom(8))
