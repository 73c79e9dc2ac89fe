"""The firmware application and the virtual board it runs on, under both interpreters: boot
bookkeeping, the virtual clock, watchdog, deep sleep, RTC memory, NVS and the heap limit."""

from __future__ import annotations

import time

import pytest

from musket_sim.scenario import load_scenario

DAY_S = 86400
WATCHDOG_RESET, DEEPSLEEP_RESET, PWRON_RESET = 3, 4, 1


def _line(result, prefix: str) -> str:
    for line in result.script_output.splitlines():
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no {prefix!r} in output:\n{result.script_output}\n{result.errors}")


def test_application_runs_a_day_and_counts_its_boots(make_device):
    device = make_device(modem=load_scenario("good"))
    first = device.run(DAY_S)
    assert first.errors == [] and first.exit_reason == "span_end"
    assert first.virtual_seconds == DAY_S
    log = device.console_log.read_text()
    assert "boot #1, reset cause power-on, board esp32-sim7080g" in log
    assert log.count(" I status: up ") == 23  # hourly, the 24th falls on the span's end
    assert "modem connected" in log
    device.run(60)
    assert "boot #2, reset cause power-on" in device.console_log.read_text()


def test_virtual_clock_runs_asyncio_sleeps_without_waiting(make_device):
    device = make_device()
    script = """
import asyncio, time
t0 = time.ticks_ms()
w0 = time.time()
async def nap(ms):
    await asyncio.sleep_ms(ms)
async def main():
    await asyncio.gather(nap(3600000), nap(1500))
    await asyncio.sleep_ms(250)
asyncio.run(main())
print("ELAPSED", time.ticks_diff(time.ticks_ms(), t0), time.time() - w0)
"""
    started = time.monotonic()
    result = device.run(DAY_S, script=script)
    wall = time.monotonic() - started
    assert _line(result, "ELAPSED") == "ELAPSED 3600250 3600"
    assert result.virtual_seconds == pytest.approx(3600.25)
    assert wall < 60, "an hour of sleeping must not take an hour"


def test_watchdog_resets_a_firmware_that_stops_feeding_it(make_device):
    device = make_device()
    script = "import machine, time\nmachine.WDT(timeout=5000)\ntime.sleep(30)\nprint('AWAKE')\n"
    result = device.run(120, script=script)
    assert result.boot_log[0].reason == "wdt"
    assert result.boot_log[0].end_virtual_us == 5_000_000
    assert result.boot_log[1].reset_cause == WATCHDOG_RESET
    assert "AWAKE" not in result.script_output
    assert any("watchdog reset" in e for e in result.errors)
    assert "reset cause watchdog" in device.console_log.read_text()


def test_deepsleep_sleeps_then_boots_with_its_reset_cause(make_device):
    device = make_device()
    result = device.run(600, script="import machine\nmachine.deepsleep(60000)\n")
    assert result.boot_log[0].reason == "deepsleep"
    assert result.boot_log[1].reset_cause == DEEPSLEEP_RESET
    assert result.boot_log[1].start_virtual_us == 60_000_000
    assert "reset cause deep-sleep" in device.console_log.read_text()


def test_rtc_memory_survives_a_reset_but_not_a_power_cut(make_device):
    device = make_device()
    keep = "import machine\nmachine.RTC().memory(b'kept')\nmachine.reset()\n"
    show = "import machine\nprint('RTC', machine.RTC().memory())\n"
    assert device.run(60, script=keep, max_boots=1).exit_reason == "reset"
    assert _line(device.run(60, script=show), "RTC") == "RTC b'kept'"
    cut = "import machine\nmachine.RTC().memory(b'lost')\nopen('f', 'w').write('x')\n"
    assert device.run(60, script=cut, cut_at_write=1, max_boots=1).exit_reason == "power_cut"
    assert _line(device.run(60, script=show), "RTC") == "RTC b''"


def test_nvs_values_survive_reboots_once_committed(make_device):
    device = make_device()
    write = """
import esp32
nvs = esp32.NVS("musket")
nvs.set_i32("kept", 42)
nvs.commit()
nvs.set_i32("dropped", 7)
"""
    read = """
import esp32
nvs = esp32.NVS("musket")
try:
    dropped = nvs.get_i32("dropped")
except OSError:
    dropped = None
print("NVS", nvs.get_i32("kept"), dropped)
"""
    device.run(60, script=write)
    assert _line(device.run(60, script=read), "NVS") == "NVS 42 None"


def test_micropython_heap_is_the_size_asked_for(make_device, interpreter):
    if interpreter != "micropython":
        pytest.skip("CPython has no fixed heap")
    device = make_device(heap=64 * 1024)
    script = """
import gc
gc.collect()
print("FREE", gc.mem_free() // 1024)
try:
    big = bytearray(80 * 1024)
    print("ALLOCATED")
except MemoryError:
    print("MEMORYERROR")
"""
    result = device.run(60, script=script)
    free_kib = int(_line(result, "FREE").split()[1])
    assert 48 <= free_kib <= 64
    assert "MEMORYERROR" in result.script_output


def test_same_seed_same_run(make_device):
    a = make_device(name="a", seed=7)
    b = make_device(name="b", seed=7)
    script = "import os\nprint('RANDOM', os.urandom(8))\n"
    assert _line(a.run(60, script=script), "RANDOM") == _line(b.run(60, script=script),
                                                               "RANDOM")
