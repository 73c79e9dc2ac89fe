"""An update on a whole virtual device: a bundle waiting on its filesystem is installed at
boot by the update's boot stage (firmware/otaboot.py), the images are swapped, the new version
boots on trial and is rolled back when it does not confirm; a bundle the device must not take
is refused with its reason and the device goes on running its version.

The new version differs from the factory one by its boot log line, so the console says which
image runs."""

from __future__ import annotations

import pytest
from updates import (
    BOARD,
    CANNOT_START,
    UPDATED,
    boot_lines,
    fresh_keys,
    marked_firmware,
    state_of,
    waiting_update,
)

from musket.ota import release
from musket.ota.keys import KeyStore
from musket_sim.device import INTERPRETERS


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> KeyStore:
    return fresh_keys(tmp_path_factory.mktemp("keys"))


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_signed_update_is_installed_swapped_and_booted_on_trial(
        make_device, keys, tmp_path, interpreter):
    new = marked_firmware(tmp_path)
    made = release.build_release(keys, version="1.1.0", boards=[BOARD], firmware_root=new,
                                 interpreter=interpreter)
    device = make_device(files=waiting_update(keys, made.data))
    result = device.run(60)  # no modem: the application resets the board after two minutes
    assert not result.errors, result.errors
    lines = boot_lines(device)
    # The first boot installed and swapped before the application started, then reset into
    # the new image: the only application that ran is the new one.
    assert result.boots == 2, result.boots
    assert len(lines) == 1 and UPDATED in lines[0], lines
    state = state_of(device)
    assert state["phase"] == "trial" and state["trial"]["version"] == "1.1.0", state
    assert "ota/bundle" not in device.read_files()


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_bundle_from_an_unknown_key_is_refused_and_the_old_version_runs(
        make_device, keys, tmp_path, interpreter):
    stranger = KeyStore(tmp_path / "other-keys")
    stranger.generate()
    made = release.build_release(stranger, version="1.1.0", boards=[BOARD],
                                 firmware_root=marked_firmware(tmp_path),
                                 interpreter=interpreter)
    device = make_device(files=waiting_update(keys, made.data))
    result = device.run(120)
    assert not result.errors, result.errors
    assert all(UPDATED not in line for line in boot_lines(device))
    state = state_of(device)
    assert state["phase"] == "idle" and state["version"] == "1.0.0", state
    assert state["last"]["result"] == "rejected", state
    assert "signature" in state["last"]["reason"], state
    assert "ota/bundle" not in device.read_files()


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_version_that_cannot_start_is_rolled_back(make_device, keys, tmp_path, interpreter):
    made = release.build_release(keys, version="1.1.0", boards=[BOARD],
                                 firmware_root=marked_firmware(tmp_path, breaking=True),
                                 interpreter=interpreter)
    device = make_device(files=waiting_update(keys, made.data))
    device.run(900)
    log = device.console_log.read_text()
    # It failed at every boot it was given; the watchdog reset each one.
    assert log.count(CANNOT_START) == 3, log[-3000:]
    lines = boot_lines(device)
    assert lines and all(UPDATED not in line for line in lines), lines  # the old image is back
    state = state_of(device)
    assert state["phase"] == "idle" and state["version"] == "1.0.0", state
    assert state["last"]["result"] == "rolled_back", state
    assert state["last"]["version"] == "1.1.0", state
