"""The firmware image's version on the technician's console, under both interpreters: a unit
that confirmed an image update (the boot stage installed it into the other app slot, the
simulated bootloader booted it on trial, the application confirmed it) names that image in its
status's identity, apart from its application's version, and `musket console status` shows it
on the identity row."""

from __future__ import annotations

import pytest
from checksuite import modules
from consoledev import status_both_ways
from image_updates import (
    TRIAL_BOOT_AND_CONFIRM,
    image_bundle_for,
    place_payload,
    waiting_image_update,
)
from updates import BOARD, STEPS, fresh_keys, state_of

from musket_sim import VirtualDevice
from musket_sim.device import INTERPRETERS
from musket_sim.scenario import load_scenario


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_unit_that_confirmed_an_image_update_names_the_image(tmp_path, interpreter):
    keys = fresh_keys(tmp_path / "keys")
    bundle, _ = image_bundle_for(keys, tmp_path)
    device = VirtualDevice(BOARD, tmp_path / "dev", interpreter=interpreter,
                           modem=load_scenario("good"), ota=True)
    device.create_flash({**waiting_image_update(keys, bundle),
                         **modules(interpreter, [STEPS], tmp_path / ".mpy-cache")})
    place_payload(device, bundle)  # downloaded: the payload where the download puts it
    device.run(60, max_boots=1)  # the boot stage installs, names the slot, resets
    trial = device.run(60, script=TRIAL_BOOT_AND_CONFIRM)
    assert "CONFIRMED" in trial.script_output, trial.script_output[-500:]
    assert state_of(device)["image_version"] == "1.29.0", state_of(device)
    answer, screen, lines, result = status_both_ways(device)
    identity = answer["identity"]
    assert (identity["firmware"], identity["image"]) == ("1.0.0", "1.29.0"), identity
    assert screen.returncode == 0, screen.stdout + screen.stderr
    rows = [ln for ln in lines if ln.startswith("identity")]
    assert rows and "firmware 1.0.0" in rows[0] and "image 1.29.0" in rows[0], screen.stdout
    assert result.errors == [], result.errors
