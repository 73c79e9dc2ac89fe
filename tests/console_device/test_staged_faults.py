"""The three faults a technician meets most, staged on a virtual device through the sim's
scenarios, each named by the console's status and selftest with its diagnosis code, what is
wrong and the repair, under both interpreters:

- no coverage, with the network's reject cause (modem scenario: deny with EMM cause 15),
- a hung modem (modem scenario: hang),
- an unplugged temperature sensor (usage scenario: the SHT's I2C NACKs).

The same scenarios work with `musket sim run --console --scenario FILE --usage FILE`
(docs/console-device.md)."""

from __future__ import annotations

import time

import pytest
from consoledev import ConsoleDevice

from musket import diagnoses
from musket_sim import VirtualDevice
from musket_sim.scenario import load_scenario
from musket_sim.usage_scenario import load_usage

BOARD = "esp32-sim7080g"
SPAN_S = 6 * 3600
SPEED = 10  # virtual seconds per wall second: the watchdog's 30 s are 3 s of wall time
HANG_AT_S = 60  # after the first attach
FAULT_WAIT_S = 60  # wall seconds for a staged fault to show


def _device(tmp_path, interpreter, modem, usage="day") -> ConsoleDevice:
    device = VirtualDevice(BOARD, tmp_path / "dev", interpreter=interpreter,
                           modem=load_scenario(modem), usage=load_usage(usage))
    device.create_flash()
    return ConsoleDevice(device, SPAN_S, SPEED).start()


def _codes(diagnosis: list[dict]) -> list[str]:
    return [d["code"] for d in diagnosis]


def _explained_as_in_the_table(entry: dict) -> None:
    row = diagnoses.find(entry["code"])
    assert row is not None, entry
    assert (entry["problem"], entry["repair"], entry["parts"]) == (row.problem, row.repair,
                                                                     row.parts)


@pytest.fixture
def run_console(tmp_path, interpreter):
    made = []

    def make(modem, usage="day"):
        con = _device(tmp_path, interpreter, modem, usage)
        made.append(con)
        return con

    yield make
    for con in made:
        con.stop()
        con.device.close()


def test_no_coverage_is_named_with_the_networks_reject_cause(run_console):
    con = run_console({"events": [{"at": 0, "deny": True, "reject_cause": 15}]})
    status = con.wait_for("denied", lambda s: "NET_NOCOV:15" in _codes(s["diagnosis"]),
                          FAULT_WAIT_S)
    entry = status["diagnosis"][_codes(status["diagnosis"]).index("NET_NOCOV:15")]
    _explained_as_in_the_table(entry)
    assert "cause 15" in entry["problem"]
    assert status["modem"]["registration"]["cause"] == 15
    assert status["health"]["connectivity"]["rj"].get("15", 0) >= 1
    selftest = con.ask("selftest")["result"]
    assert selftest["passed"] is False
    assert "NET_NOCOV:15" in _codes(selftest["diagnosis"])
    # And a person reads the same on the screen.
    shown = con.type_line("status")
    assert "code: NET_NOCOV:15" in shown and "repair: check the antenna" in shown, shown


def test_a_hung_modem_is_named(run_console):
    con = run_console({"events": [{"at": HANG_AT_S, "hang": True}]})
    con.wait_for("connected", lambda s: s["modem"]["state"] == "connected")
    deadline = time.monotonic() + FAULT_WAIT_S
    while True:
        selftest = con.ask("selftest")["result"]
        if "MODEM_HUNG" in _codes(selftest["diagnosis"]):
            break
        assert time.monotonic() < deadline, selftest
        time.sleep(1)
    assert selftest["checks"]["modem"] == "does not answer"
    _explained_as_in_the_table(selftest["diagnosis"][_codes(selftest["diagnosis"])
                                                     .index("MODEM_HUNG")])


def test_an_unplugged_temperature_sensor_is_named(run_console, tmp_path):
    usage = {"faults": [{"at": 0, "for": 86400, "sensor": "sht", "kind": "nack"}]}
    con = run_console("good", usage)
    con.wait_for("connected", lambda s: s["modem"]["state"] == "connected")
    status = con.wait_for("sensor fault", lambda s: "SENSOR_MISSING:sht" in
                          _codes(s["diagnosis"]), FAULT_WAIT_S)
    _explained_as_in_the_table(status["diagnosis"][0])
    assert status["sensors"]["faults"] == {"sht": "missing"}
    selftest = con.ask("selftest")["result"]
    assert selftest["checks"]["sensor sht"] == "missing"
    assert _codes(selftest["diagnosis"]) == ["SENSOR_MISSING:sht"]
