"""A console cable pulled in the middle of `config set`, under both interpreters: the device
keeps the old value or the new one, never a mix, on flash as in the running part, and its
console answers the next technician."""

from __future__ import annotations

import json

import pytest
from consoledev import ConsoleDevice

from musket_sim import VirtualDevice
from musket_sim.scenario import load_scenario
from musket_sim.usage_scenario import load_usage

BOARD = "esp32-sim7080g"
HEADER = 14  # app/store.py's record header
OLD, NEW = 1500, 1700


@pytest.fixture
def console(tmp_path, interpreter):
    device = VirtualDevice(BOARD, tmp_path / "dev", interpreter=interpreter,
                           modem=load_scenario("good"), usage=load_usage("day"))
    device.create_flash()
    con = ConsoleDevice(device, 6 * 3600, 5).start()
    yield con
    result = con.stop()
    device.close()
    assert result.errors == [], result.errors


def _stored(con: ConsoleDevice) -> int:
    data = con.device.read_files().get("config.json")
    if data is None:
        return OLD
    return json.loads(data[HEADER:]).get("brew_ma", OLD)


def _token(console: ConsoleDevice) -> str:
    # Service mode, and the token of the change to NEW.
    assert console.ask("service on Ana Field")["ok"] is True
    return console.ask(f"config set brew_ma {NEW}")["confirm"]


def test_a_cable_pulled_in_the_middle_of_config_set_leaves_old_or_new(console):
    token = _token(console)
    # The confirmed request goes out, the cable comes out before any answer is read.
    console.send(f"@7 config set brew_ma {NEW} confirm={token}\r".encode())
    console.close_port()
    console.open()
    value = console.ask("config get brew_ma")["result"]["value"]
    assert value in (OLD, NEW)
    assert _stored(console) == value


def test_half_a_line_before_the_cut_changes_nothing(console):
    token = _token(console)
    console.send(f"@8 config set brew_ma {NEW} confirm={token[:3]}".encode())
    console.close_port()
    console.open()
    # The next technician's first Enter ends the half line: its token is cut short, refused.
    console.send(b"\r")
    console.read_until(b"@8 ")
    refused = json.loads(console.read_until(b"\n"))
    assert refused["ok"] is False and "does not match" in refused["error"], refused
    assert console.ask("config get brew_ma")["result"]["value"] == OLD
    assert _stored(console) == OLD
