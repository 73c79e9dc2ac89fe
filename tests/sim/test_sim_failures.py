"""The simulator never invents what the device did.

A failure of the simulator's own code (a model on the host, the interpreter under the firmware)
ends the run and says so: it is not played as a device reboot, the virtual clock does not run
backwards, and no use is counted that the usage model did not play. The appliance outlives the
controller: a brew under way when the ESP32's watchdog resets it goes on, and is counted once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from checksuite import call, modules
from test_sensors_usage import COUNTER_STATE, _record

from musket_sim import VirtualDevice
from musket_sim.scenario import load_scenario
from musket_sim.usage_scenario import expected_counts, load_usage

BOARD = "esp32-sim7080g"
US = 1_000_000
FAILS_AT_S = 9 * 3600  # two hours into the café's day
STEPS = Path(__file__).parent / "checks" / "sim_failures.py"  # what the device runs


def _device_modules(interpreter: str, tmp_path) -> dict[str, bytes]:
    return modules(interpreter, [STEPS, COUNTER_STATE], tmp_path / ".mpy-cache")


def _failing_model(world, settings):
    def fail():
        raise RuntimeError("the brake model broke")
    world.at(FAILS_AT_S * US, fail)


def _counts(device: VirtualDevice) -> dict:
    state = device.run(60, script=call("counter_state.show"))
    line = next(ln for ln in state.script_output.splitlines() if ln.startswith("STATE "))
    return eval(line.split(" ", 1)[1])  # a dict literal


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_a_model_that_fails_ends_the_run_as_the_simulators_failure(tmp_path, interpreter):
    device = VirtualDevice(BOARD, tmp_path, interpreter=interpreter, usage=load_usage("day"),
                           modem=load_scenario("good"), models=[_failing_model])
    device.create_flash(_device_modules(interpreter, tmp_path))
    result = device.run(12 * 3600)
    assert result.exit_reason == "sim_failure"
    assert result.boots == 1, result.boot_log  # not played on as a reboot
    (error,) = result.errors
    assert "the simulator failed" in error and "the brake model broke" in error
    # The clock stopped where the model failed, and carries on from there.
    assert FAILS_AT_S - 5 <= result.virtual_seconds <= FAILS_AT_S
    counts = _counts(device)
    certain, _, maybe = expected_counts(device.usage_settings(), device.seed, 0, FAILS_AT_S,
                                        brew_min_s=10, min_pulses=20)
    assert certain - 1 <= counts["brews"] <= certain + maybe + 1  # one may be under way




@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_an_interpreter_that_dies_is_reported_and_its_time_kept(tmp_path, interpreter):
    device = VirtualDevice(BOARD, tmp_path, interpreter=interpreter)
    device.create_flash(_device_modules(interpreter, tmp_path))
    result = device.run(3600, script=call("sim_failures.die_after", 100))
    assert result.exit_reason == "crash"
    assert result.boots == 1
    assert "the interpreter died" in result.errors[0]
    assert "NOT REACHED" not in result.script_output
    # The device's clock had reached 100 s: the next run starts there, nothing is replayed.
    assert result.virtual_seconds == pytest.approx(100, abs=0.01)


# The second brew of the café's day runs from 25,581 s for 40 s (musket_sim.usage_scenario,
# seed 0). The application's loop is stalled 3 s into it; the watchdog (5 s) resets the chip.
STALL_AT_S = 25584


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_a_brew_under_way_at_a_watchdog_reset_is_counted_once(tmp_path, interpreter):
    span_s = 26000
    device = VirtualDevice(BOARD, tmp_path, interpreter=interpreter, usage=load_usage("day"),
                           modem=load_scenario("good"))
    device.create_flash({"main.py": call("sim_failures.stalling_app", STALL_AT_S).encode(),
                         "config.json": _record({"wdt_timeout_ms": 5000}),
                         **_device_modules(interpreter, tmp_path)})
    result = device.run(span_s)
    reasons = [(b.reason, round(b.end_virtual_us / US)) for b in result.boot_log]
    assert reasons[0][0] == "wdt" and STALL_AT_S < reasons[0][1] < STALL_AT_S + 10, reasons
    assert result.boots == 2, reasons
    brews, _, maybe = expected_counts(device.usage_settings(), device.seed, 0, span_s,
                                      brew_min_s=10, min_pulses=20)
    assert maybe == 0
    assert _counts(device)["brews"] == brews
