"""An update's progress on the technician's console, under both interpreters: a unit that
holds part of a bundle (its download stopped by the link) says in its status which campaign
and version it is taking and how many bytes it holds of the bundle's size, and `musket
console status` shows it on its update row."""

from __future__ import annotations

from pathlib import Path

import pytest
from checksuite import call, modules
from consoledev import status_both_ways

from musket_sim import VirtualDevice
from musket_sim.device import INTERPRETERS
from musket_sim.scenario import load_scenario

BOARD = "esp32-sim7080g"
STEPS = Path(__file__).resolve().parent.parent / "ota" / "checks" / "update_steps.py"
BUNDLE_SIZE = 5000  # the steps take what they are fed: any bytes do for a partial download
CHUNKS = 7  # of 240 bytes each


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_unit_mid_download_shows_the_bytes_it_holds_of_the_bundle(tmp_path, interpreter):
    device = VirtualDevice(BOARD, tmp_path / "dev", interpreter=interpreter,
                           modem=load_scenario("good"))
    device.create_flash({"feed/bundle": bytes(range(250)) * (BUNDLE_SIZE // 250),
                         **modules(interpreter, [STEPS], tmp_path / ".mpy-cache")})
    # Provisioned for a broker (the OTA part comes with the uplink) that never answers: the
    # download stays where the link left it. The firmware writes its own config.
    provision = ("from app import config\nconfig.save('/config.json', {'device_id': 'dev-a', "
                 "'mqtt_host': '127.0.0.1', 'mqtt_port': 9})\n")
    part = device.run(60, script=provision + call("update_steps.download", "1.1.0", CHUNKS),
                      max_boots=1)
    assert f"HELD {CHUNKS * 240}" in part.script_output, part.script_output[-500:]
    answer, screen, lines, result = status_both_ways(device)
    ota = answer["ota"]
    assert ota == {"state": "downloading", "campaign": "cuts", "version": "1.1.0",
                   "at": CHUNKS * 240, "size": BUNDLE_SIZE}, ota
    assert screen.returncode == 0, screen.stdout + screen.stderr
    rows = [ln for ln in lines if ln.startswith("update ")]
    assert rows and rows[0].split()[1:] == [
        "downloading", "campaign", "cuts", "version", "1.1.0", "held", "1,680", "of", "5,000",
        "bytes", "(33%)"], screen.stdout
    assert result.errors == [], result.errors
