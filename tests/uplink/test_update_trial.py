"""A version an update installed is on trial until the broker acknowledges one of its
sessions (firmware/app/ota/trial.py): through a real Mosquitto it confirms itself and becomes
the device's version; with no broker to reach within `ota_trial_s` the previous version comes
back, and the state says why."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import device_files
from updates import (
    BOARD,
    UPDATED,
    boot_lines,
    fresh_keys,
    marked_firmware,
    put_waiting,
    signed_update,
    state_of,
    waiting_update,
)

from musket.ota import release
from musket.ota.keys import KeyStore
from musket_sim.device import INTERPRETERS
from musket_sim.scenario import load_scenario


@pytest.fixture
def update(tmp_path_factory, interpreter):
    keys = fresh_keys(tmp_path_factory.mktemp("keys"))
    return keys, signed_update(keys, tmp_path_factory.mktemp("new"), interpreter)


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_an_update_that_reaches_the_broker_confirms_itself(make_device, mosquitto, update,
                                                           interpreter):
    keys, bundle = update
    files = {**device_files("dev-a", mosquitto.port), **waiting_update(keys, bundle)}
    device = make_device(files=files, modem=load_scenario("good"))
    result = device.run(600)
    assert not result.errors, result.errors
    log = device.console_log.read_text()
    assert "ota: version 1.1.0 confirmed" in log, log[-3000:]
    state = state_of(device)
    assert state["phase"] == "idle" and state["version"] == "1.1.0", state
    assert state["last"]["version"] == "1.1.0", state
    assert state["last"]["result"] == "confirmed", state
    # Confirmed, it stays: the next boots run it without counting a trial.
    device.run(120)
    assert all(UPDATED in line for line in boot_lines(device)), boot_lines(device)
    assert state_of(device)["phase"] == "idle"


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_an_update_that_never_reaches_the_broker_is_rolled_back(make_device, update,
                                                                interpreter):
    keys, bundle = update
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        nobody = s.getsockname()[1]
    files = {**device_files("dev-a", nobody, ota_trial_s=300), **waiting_update(keys, bundle)}
    device = make_device(files=files, modem=load_scenario("good"))
    device.run(900)
    lines = boot_lines(device)
    assert UPDATED in lines[0] and UPDATED not in lines[-1], lines
    state = state_of(device)
    assert state["phase"] == "idle" and state["version"] == "1.0.0", state
    assert state["last"]["result"] == "rolled_back", state
    assert "no broker session in 300 s" in state["last"]["reason"], state


@pytest.mark.parametrize("interpreter", ["micropython"])
def test_a_confirmed_update_brings_the_keys_its_bundle_names(make_device, mosquitto, tmp_path,
                                                             interpreter):
    # Key rotation: the device trusts the old key only; the first bundle after `keys rotate`
    # is signed by it and names both; once confirmed, the device takes the new key's bundles.
    keys = KeyStore(tmp_path / "keys")
    keys.generate()
    old, new = keys.rotate()
    made = release.build_release(keys, version="1.1.0", boards=[BOARD], sign_with=old.id,
                                 firmware_root=marked_firmware(tmp_path / "v1"))
    files = {**device_files("dev-a", mosquitto.port), **waiting_update(keys, made.data)}
    files["ota/keys.json"] = json.dumps([old.public_key.hex()]).encode()
    device = make_device(files=files, modem=load_scenario("good"))
    device.run(300)
    assert state_of(device)["version"] == "1.1.0", state_of(device)
    trusted = json.loads(device.read_files()["ota/keys.json"])
    assert sorted(trusted) == sorted([old.public_key.hex(), new.public_key.hex()]), trusted

    later = release.build_release(keys, version="1.2.0", boards=[BOARD],
                                  firmware_root=marked_firmware(tmp_path / "v2"))
    assert later.key_id == new.id
    put_waiting(device, later.data)
    device.run(300)
    assert state_of(device)["version"] == "1.2.0", state_of(device)
