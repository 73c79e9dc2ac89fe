"""Acceptance: a technician at `musket console` on virtual units running the real firmware
(the real MicroPython interpreter unless a test says otherwise), typing as a person would
(pexpect) and reading the screen the console draws (pyte), against staged faults from the
modem and appliance models; the registry is a real SQLite file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pexpect
import pytest
from console_units import (
    ACTOR,
    BUSY_USAGE,
    ICCIDS,
    MUSKET,
    make_registry,
    provision_in_service,
    service_watch,
)

from musket import diagnoses
from musket.console import ConsoleClient
from musket.errors import ExitCode
from musket.provision import BrokerSettings, provision
from musket.registry import Registry
from musket_sim.usage_scenario import expected_counts, load_usage

# The screen shows the start of a repair's text on the code's line: enough to know it.
REPAIR_CHARS = 24
FOREVER_S = 60 * 86400


def repair_start(code: str) -> str:
    return diagnoses.find(code).repair[:REPAIR_CHARS]


@pytest.fixture
def registry_file(tmp_path):
    return make_registry(tmp_path)


# -- three staged faults, each named on the screen with its code and repair -------------------

FAULTS = {
    # No cell at first; then the only cell found refuses the registration: no suitable cells
    # in the tracking area (EMM reject cause 15).
    "no-coverage": dict(scenario={"events": [
        {"at": 0, "coverage": False},
        {"at": 45, "coverage": True, "deny": True, "reject_cause": 15}]}, code="NET_NOCOV:15"),
    # The modem stops answering AT commands a minute after boot.
    "hung-modem": dict(scenario={"events": [{"at": 60, "hang": True}]}, code="MODEM_HUNG"),
    # The temperature sensor's cable is unplugged: its I2C address never answers.
    "unplugged-sensor": dict(usage={"faults": [{"at": 0, "for": FOREVER_S, "sensor": "sht",
                                                "kind": "nack"}]},
                             code="SENSOR_MISSING:sht"),
}


FAULT_SPEED = 10  # virtual seconds per wall second: the hang comes 6 s after the start


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_the_screen_names_a_staged_fault_with_its_code_and_repair(fault, units, people):
    staged = FAULTS[fault]
    unit = units(fault, scenario=staged.get("scenario", "good"),
                 usage=staged.get("usage", "day"), speed=FAULT_SPEED)
    unit.start()
    unit.wait_ready()
    person = people(unit.port, "--technician", "Rui Costa")
    person.wait_for("identity", "registration")
    person.type("selftest")
    screen = person.wait_for(staged["code"], repair_start(staged["code"]), timeout=180)
    if fault == "no-coverage":
        assert re.search(r"^registration .*reject cause 15", screen, re.M), screen
    assert person.quit() == 0


# -- counting goes on with the console attached, during a selftest and after it ---------------

def counted_and_expected(unit, status: dict) -> tuple[int, tuple[int, int]]:
    """The unit's brews and the range the usage model allows at the unit's uptime (a brew
    under way at either end may or may not be in the count yet)."""
    usage = {**load_usage(unit.usage_dict), "k_factor": 1.0}
    now = status["uptime_s"]
    low, _, _ = expected_counts(usage, unit.seed, 0, max(0, now - 120), brew_min_s=10,
                                min_pulses=20)
    # The model's clock started at power-on, a few seconds before the application's uptime.
    high, _, maybe = expected_counts(usage, unit.seed, 0, now + 60, brew_min_s=10,
                                     min_pulses=20)
    return status["counters"]["values"].get("brews", 0), (low, high + maybe)


def screen_status(person) -> dict:
    """uptime and brews as the status view shows them now."""
    screen = person.text()
    up = re.search(r"\bup (?:(\d+)h)?(\d+)m(\d+)s", screen)
    brews = re.search(r"\bbrews (\d+)", screen)  # absent until the first brew is counted
    assert up and "awaiting delivery" in screen, screen
    hours, minutes, seconds = (int(g or 0) for g in up.groups())
    return {"uptime_s": hours * 3600 + minutes * 60 + seconds,
            "counters": {"values": {"brews": int(brews.group(1)) if brews else 0}}}


# Virtual seconds per wall second for the busy unit, and the virtual seconds it runs attached
# and then detached: a few brews each (BUSY_USAGE: one about every 86 s).
BUSY_SPEED = 20
BUSY_SPAN_S = 300


@pytest.mark.slow
def test_brews_are_counted_while_attached_during_a_selftest_and_after(units, people):
    unit = units("busy", usage=BUSY_USAGE, speed=BUSY_SPEED)
    unit.start()
    unit.wait_ready()
    person = people(unit.port)
    person.wait_for("awaiting delivery")
    time.sleep(BUSY_SPAN_S / BUSY_SPEED)  # a few brews with the console attached
    person.pump(6)  # the status view refreshes every 5 s
    attached = screen_status(person)
    count, (low, high) = counted_and_expected(unit, attached)
    assert low <= count <= high, (count, low, high)

    person.type("selftest")
    person.wait_for("diagnosis", "checks", timeout=120)
    person.pump(6)
    after_selftest = screen_status(person)
    count, (low, high) = counted_and_expected(unit, after_selftest)
    assert low <= count <= high, (count, low, high)
    assert person.quit() == 0

    time.sleep(BUSY_SPAN_S / BUSY_SPEED)
    detached = json.loads(subprocess.run(
        [MUSKET, "console", "--port", unit.port, "status", "--json"], capture_output=True,
        text=True, check=True, timeout=60).stdout)
    count, (low, high) = counted_and_expected(unit, detached)
    assert low <= count <= high, (count, low, high)
    assert detached["uptime_s"] > after_selftest["uptime_s"] > attached["uptime_s"]
    # Brews the model makes certain came after the console was attached: the count moved.
    assert count >= low > attached["counters"]["values"]["brews"], (count, low, attached)


# -- a SIM swap, found by the console and recorded in the registry -----------------------------

def test_a_sim_swap_is_detected_and_recorded_with_old_and_new_iccid(units, people, broker,
                                                                   registry_file, tmp_path):
    unit = units("swap", scenario={"iccid": ICCIDS[0]}, speed=5)
    device_id = provision_in_service(unit, registry_file, broker)
    # In service, the unit binds itself to its SIM with its first status message (kept on its
    # flash).
    unit.wait_status(lambda st: (st.get("health") or {}).get("iccid_bound") == ICCIDS[0],
                     timeout=180)
    unit.stop()
    # Switched off, a new SIM goes into the slot: the modem reads it at its next power-on.
    unit.scenario = unit.file("scenario", {"iccid": ICCIDS[0],
                                           "events": [{"at": 0, "sim_swap": ICCIDS[1]}]})
    unit.start(fresh=False)
    status = unit.wait_status(lambda st: (st.get("modem") or {}).get("iccid"))
    assert status["modem"]["iccid"] == ICCIDS[1]
    person = people(unit.port, "--technician", "Rui Costa", "--registry", str(registry_file),
                    "--queue", str(tmp_path / "queue.jsonl"), "--station", "van-7")
    person.wait_for("identity", device_id)
    person.type("service on")
    person.type("sim-swap SIM cracked")
    person.wait_for("confirm?", f"{ICCIDS[0]} -> {ICCIDS[1]}")
    person.type("y")
    person.wait_for("recorded", f"{ICCIDS[0]} → {ICCIDS[1]}")
    assert person.quit() == 0

    with Registry.open(registry_file) as registry:
        device = registry.device(device_id)
        assert device.iccid == ICCIDS[1]
        assert [b.iccid for b in device.bindings] == [ICCIDS[0], ICCIDS[1]]
        entry = registry.audit(subject=device_id)[-1]
    assert (entry.action, entry.operator, entry.station) == ("rebind", "Rui Costa", "van-7")
    assert entry.changes["iccid"] == [ICCIDS[0], ICCIDS[1]]
    assert entry.changes["reason"] == "SIM cracked"
    assert not (tmp_path / "queue.jsonl").exists()
    # The unit recorded the swap too, with the technician's name.
    with ConsoleClient.open(unit.port) as console:
        assert console.status()["health"]["iccid_bound"] == ICCIDS[1]


# -- a cable pulled in the middle of `config set` ------------------------------------------------

KEY = "report_interval_s"


@pytest.mark.parametrize("cut", ["mid-line", "before-the-answer"])
def test_a_cable_pulled_mid_config_set_leaves_the_old_or_the_new_value(cut, units):
    unit = units(f"cable-{cut}", speed=5)
    unit.start()
    unit.wait_ready()
    with ConsoleClient.open(unit.port) as console:
        console.service_on("Rui Costa")
        old = console.config_get(KEY)["value"]
        new = old * 2
        first = console.wire.request(f"config set {KEY} {new}")
        assert first.confirm, first
        line = f"@99 config set {KEY} {new} confirm={first.confirm}\r\n".encode()
        # The cable goes: half the line, or all of it but before the answer comes back.
        console.wire.transport.write(line[:len(line) // 2] if cut == "mid-line" else line)
        console.wire.transport.flush()
    with ConsoleClient.open(unit.port) as console:  # plugged in again
        value = console.config_get(KEY)["value"]
        assert value == (old if cut == "mid-line" else new)
        assert console.status()["identity"]  # and the unit answers as before


def test_a_port_that_goes_away_ends_the_session_with_exit_code_5(units, people):
    unit = units("gone", speed=5, interpreter="cpython")
    unit.start()
    unit.wait_ready()
    person = people(unit.port)
    person.wait_for("identity")
    unit.stop()  # the unit (and its USB serial port) disappears
    person.child.expect("went away", timeout=30)
    person.child.expect("hint: check the USB cable", timeout=10)
    person.child.expect(pexpect.EOF, timeout=10)
    person.child.close()
    assert person.child.exitstatus == ExitCode.UNIT_SILENT


# -- the end-of-line test ---------------------------------------------------------------------

def test_a_unit_with_a_broken_sensor_fails_the_end_of_line_test(units, registry_file):
    unit = units("eol-broken", scenario={"iccid": ICCIDS[0]},
                 usage={"faults": [{"at": 0, "for": FOREVER_S, "sensor": "sht",
                                    "kind": "nack"}]}, speed=5)
    unit.start()
    with Registry.open(registry_file) as registry:
        device_id = provision(unit.port, registry, BrokerSettings("127.0.0.1", tls=False),
                              ACTOR).device_id
    unit.wait_ready()
    run = subprocess.run([MUSKET, "factory", "verify", "--port", unit.port, "--registry",
                          str(registry_file), "--station", "eol-1", "--operator", "ana",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert run.returncode == ExitCode.DEVICE_ERRORS, run.stderr
    result = json.loads(run.stdout)
    assert result["device_id"] == device_id and result["passed"] is False
    assert "SENSOR_MISSING:sht" in result["codes"]
    assert result["measurements"]["sensors"] is not None

    from musket.registry.eol import shippable, yield_report

    with Registry.open(registry_file) as registry:
        assert not shippable(registry, device_id)
        (row,) = [r.as_dict() for r in yield_report(registry)]
    assert (row["station"], row["passed"], row["failed"]) == ("eol-1", 0, 1)
    assert row["codes"]["SENSOR_MISSING:sht"] == 1


def test_a_healthy_unit_passes_once_the_broker_has_its_message_and_is_shippable(
        units, broker, registry_file):
    unit = units("eol-good", scenario={"iccid": ICCIDS[0]}, speed=5)
    device_id = provision_in_service(unit, registry_file, broker)
    unit.wait_ready()
    watch = service_watch(broker)
    run = subprocess.run(
        [MUSKET, "factory", "verify", "--port", unit.port, "--registry", str(registry_file),
         "--station", "eol-2", "--operator", "bo", "--broker-host", watch.host,
         "--broker-port", str(watch.port), "--no-tls", "--service-user", watch.user,
         "--json"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "MUSKET_SERVICE_PASSWORD": watch.password})
    assert run.returncode == 0, run.stderr + run.stdout + broker.log()[-2000:]
    result = json.loads(run.stdout)
    assert (result["device_id"], result["passed"], result["codes"]) == (device_id, True, [])
    assert result["measurements"]["telemetry"]["topic"].startswith(f"d/{device_id}/")
    assert watch.password not in run.stdout + run.stderr

    from musket.registry.eol import shippable, yield_report

    with Registry.open(registry_file) as registry:
        assert shippable(registry, device_id)
        (row,) = [r.as_dict() for r in yield_report(registry)]
    assert (row["station"], row["passed"], row["failed"], row["codes"]) == ("eol-2", 1, 0, {})
