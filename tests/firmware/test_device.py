"""The firmware application and the virtual board it runs on, under both interpreters: boot
bookkeeping, the virtual clock, watchdog, deep sleep, RTC memory, NVS and the heap limit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from checksuite import call

from musket_sim.scenario import load_scenario

DAY_S = 86400
WATCHDOG_RESET, DEEPSLEEP_RESET, PWRON_RESET = 3, 4, 1
STEPS = Path(__file__).parent / "checks" / "board_steps.py"  # what the scripts call


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
    device = make_device(device_modules=[STEPS])
    started = time.monotonic()
    result = device.run(DAY_S, script=call("board_steps.clock"))
    wall = time.monotonic() - started
    assert _line(result, "ELAPSED") == "ELAPSED 3600250 3600"
    assert result.virtual_seconds == pytest.approx(3600.25)
    assert wall < 60, "an hour of sleeping must not take an hour"


def test_watchdog_resets_a_firmware_that_stops_feeding_it(make_device):
    device = make_device(device_modules=[STEPS])
    result = device.run(120, script=call("board_steps.starve_the_watchdog"))
    assert result.boot_log[0].reason == "wdt"
    assert result.boot_log[0].end_virtual_us == 5_000_000
    assert result.boot_log[1].reset_cause == WATCHDOG_RESET
    assert "AWAKE" not in result.script_output
    assert any("watchdog reset" in e for e in result.errors)
    assert "reset cause watchdog" in device.console_log.read_text()


def test_deepsleep_sleeps_then_boots_with_its_reset_cause(make_device):
    device = make_device(device_modules=[STEPS])
    result = device.run(600, script=call("board_steps.deepsleep_a_minute"))
    assert result.boot_log[0].reason == "deepsleep"
    assert result.boot_log[1].reset_cause == DEEPSLEEP_RESET
    assert result.boot_log[1].start_virtual_us == 60_000_000
    assert "reset cause deep-sleep" in device.console_log.read_text()


def test_rtc_memory_survives_a_reset_but_not_a_power_cut(make_device):
    device = make_device(device_modules=[STEPS])
    keep = call("board_steps.rtc_keep_and_reset")
    show = call("board_steps.rtc_show")
    assert device.run(60, script=keep, max_boots=1).exit_reason == "reset"
    assert _line(device.run(60, script=show), "RTC") == "RTC b'kept'"
    cut = call("board_steps.rtc_write_then_flash")
    assert device.run(60, script=cut, cut_at_write=1, max_boots=1).exit_reason == "power_cut"
    assert _line(device.run(60, script=show), "RTC") == "RTC b''"


def test_nvs_values_survive_reboots_once_committed(make_device):
    device = make_device(device_modules=[STEPS])
    device.run(60, script=call("board_steps.nvs_write"))
    assert _line(device.run(60, script=call("board_steps.nvs_read")), "NVS") == "NVS 42 None"


def test_micropython_heap_is_the_size_asked_for(make_device, interpreter):
    if interpreter != "micropython":
        pytest.skip("CPython has no fixed heap")
    device = make_device(heap=64 * 1024, device_modules=[STEPS])
    result = device.run(60, script=call("board_steps.heap"))
    free_kib = int(_line(result, "FREE").split()[1])
    assert 48 <= free_kib <= 64
    assert "MEMORYERROR" in result.script_output


def test_same_seed_same_run(make_device):
    a = make_device(name="a", seed=7, device_modules=[STEPS])
    b = make_device(name="b", seed=7, device_modules=[STEPS])
    script = call("board_steps.random_bytes")
    assert _line(a.run(60, script=script), "RANDOM") == _line(b.run(60, script=script),
                                                               "RANDOM")
