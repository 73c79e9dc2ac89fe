"""The application on a virtual device with the sensor model: brews and dispenses from the
usage script become counts and service events, sensor faults show in status and stop no
counting. Expected values come from the script's own events (musket_sim.usage_scenario)."""

from __future__ import annotations

import binascii
import json
import struct
from pathlib import Path

import pytest
from checksuite import call, modules

from musket_sim import VirtualDevice
from musket_sim.scenario import load_scenario
from musket_sim.usage_scenario import expected_counts, load_usage

BOARD = "esp32-sim7080g"
# Thresholds a few busy days cross several times each: beans every 60 brews, a descale every
# 75 l, the filter once at 300 l.
BEANS_EVERY, FILTER_AT_L, DESCALE_EVERY_L = 60, 300, 75
RULES = (f"brews/{BEANS_EVERY}:reorder-beans;litres@{FILTER_AT_L}:replace-filter;"
         f"litres/{DESCALE_EVERY_L}:descale")
COUNTER_STATE = Path(__file__).parent / "checks" / "counter_state.py"  # read after a run


def _record(obj: dict) -> bytes:
    """A store record (app/store.py), as the firmware's config file holds it."""
    data = json.dumps(obj).encode()
    return struct.pack("<4sBBII", b"MSKR", 1, 0, len(data), binascii.crc32(data)) + data


def _run(tmp_path, interpreter: str, usage: str, days: float, rules: str = RULES,
         modem: bool = False):
    device = VirtualDevice(BOARD, tmp_path / "dev", interpreter=interpreter,
                           usage=load_usage(usage), modem=load_scenario("good") if modem else None)
    device.create_flash({"config.json": _record({"service_rules": rules}),
                         **modules(interpreter, [COUNTER_STATE], tmp_path / ".mpy-cache")})
    result = device.run(days * 86400)
    state = device.run(60, script=call("counter_state.show"))
    lines = {ln.split(" ", 1)[0]: eval(ln.split(" ", 1)[1])  # dict and list literals
             for ln in state.script_output.splitlines() if ln.startswith(("STATE", "EVENTS"))}
    return device, result, lines


def _expected(device: VirtualDevice, days: float):
    return expected_counts(device.usage_settings(), device.seed, 0, days * 86400,
                           brew_min_s=10, min_pulses=20)


def _services(brews: int, ml: int) -> list[tuple]:
    out = [("service", "brews", t, None, "reorder-beans")
           for t in range(BEANS_EVERY, brews + 1, BEANS_EVERY)]
    out += [("service", "litres", float(t), None, "descale")
            for t in range(DESCALE_EVERY_L, ml // 1000 + 1, DESCALE_EVERY_L)]
    if ml >= FILTER_AT_L * 1000:
        out.append(("service", "litres", float(FILTER_AT_L), None, "replace-filter"))
    return out


def _check_days(device, result, lines, days):
    assert result.errors == [], result.errors
    brews, ml, _ = _expected(device, days)
    state = lines["STATE"]
    assert state["brews"] == brews
    assert round(state["litres"] * 1000) == ml
    got = sorted((k, n, t, i) for k, n, t, _, i in lines["EVENTS"])
    want = sorted((k, n, t, i) for k, n, t, _, i in _services(brews, ml))
    assert got == want


@pytest.mark.slow
def test_three_busy_days_give_the_scripted_counts_and_service_events(tmp_path):
    """CPython: three days of a busy café (about 440 brews and 650 l): every threshold of
    the rules is crossed, the litres' one-off and its repeats."""
    device, result, lines = _run(tmp_path, "cpython", "busy", 3)
    _check_days(device, result, lines, 3)
    kinds = {(e[1], e[4]) for e in lines["EVENTS"]}
    assert kinds == {("brews", "reorder-beans"), ("litres", "descale"),
                     ("litres", "replace-filter")}, kinds
    assert len(lines["EVENTS"]) >= 10, "the days cross several thresholds of each rule"


def test_days_of_use_under_micropython(tmp_path):
    # With the modem model, as the product runs: the firmware's share is 64K + the model's 16K.
    device, result, lines = _run(tmp_path, "micropython", "busy", 1, modem=True,
                                 rules="brews/50:reorder-beans;litres@300:replace-filter")
    assert result.errors == [], result.errors
    brews, ml, _ = _expected(device, 1)
    assert lines["STATE"]["brews"] == brews and round(lines["STATE"]["litres"] * 1000) == ml
    got = sorted(e[1:3] for e in lines["EVENTS"])
    want = sorted([("brews", t) for t in range(50, brews + 1, 50)]
                  + ([("litres", 300.0)] if ml >= 300000 else []))
    assert got == want and got


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_sensor_faults_are_reported_and_counting_goes_on(tmp_path, interpreter):
    device, result, lines = _run(tmp_path, interpreter, "faults", 1, modem=True)
    assert result.errors == [], result.errors
    log = device.console_log.read_text()
    for fault in ("sht: missing", "sht: crc", "sht: stuck", "current: disconnected",
                  "current: stuck", "supply: disconnected"):
        assert f"W sensors: {fault}" in log, fault
    assert "I sensors: sht: recovered" in log
    brews, ml, maybe = _expected(device, 1)
    assert brews <= lines["STATE"]["brews"] <= brews + maybe
    assert round(lines["STATE"]["litres"] * 1000) == ml, "dispenses counted through the faults"
