"""An image update from the fleet to a device built with the OTA layout, over a real
Mosquitto: offered and pulled as any bundle, installed into the other app slot by the boot
stage, booted on trial by the simulated bootloader, and confirmed by the application itself
(app/ota/trial.py: mark_app_valid_cancel_rollback() once the broker acknowledged a session),
so that it stays at the boots after; the device's status names the image from then on."""

from __future__ import annotations

import cbor2
import pytest
from conftest import device_files, serve_update
from image_updates import NEW_VERSION, image_bundle_for, otadata_of
from updates import fresh_keys, state_of, trusting

from musket_sim.chip import _simotadata as otadata
from musket_sim.device import INTERPRETERS
from musket_sim.scenario import load_scenario


def _image_update(make_device, port, folder):
    # -> (the device, the run that took the update, the fleet's record of it): a device with
    # the OTA layout, offered the image bundle of 1.29.0 once it ran for a while.
    keys = fresh_keys(folder / "keys")
    bundle, _ = image_bundle_for(keys, folder)
    device = make_device(files={**device_files("dev-a", port), **trusting(keys)},
                         modem=load_scenario("good"), ota=True)
    device.run(300)
    result, served = serve_update(device, port, "img-1", "1.29.0", bundle, "confirmed")
    return device, result, served


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_an_offered_image_update_is_confirmed_by_the_application(
        make_device, mosquitto, tmp_path, interpreter):
    device, result, served = _image_update(make_device, mosquitto.port, tmp_path)
    assert not result.errors, result.errors
    assert [r["state"] for r in served.reports] == [
        "downloaded", "verifying", "staged", "booting", "confirmed"], served.reports
    # One boot on ota_0 downloaded and reset, one installed and reset, then the new image.
    apps = [b.app for b in result.boot_log]
    assert apps[:2] == ["ota_0", "ota_0"] and set(apps[2:]) == {"ota_1"}, result.boot_log
    assert device.last_boot.image.version == NEW_VERSION
    assert otadata_of(device)[1].state == otadata.VALID
    state = state_of(device)
    assert state["image_version"] == "1.29.0" and state["last"]["campaign"] == "img-1", state


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_the_status_names_the_firmware_image_once_its_update_confirmed(
        make_device, mosquitto, subscriber, tmp_path, interpreter):
    sub = subscriber(topics=("d/dev-a/s",))
    device, result, _ = _image_update(make_device, mosquitto.port, tmp_path)
    assert not result.errors, result.errors
    statuses = _statuses(sub)
    # Nothing while the device runs the image flashed on the line (no air bytes spent on it),
    # then the confirmed image's version, retained on d/<id>/s from its confirmation on.
    assert statuses and "im" not in statuses[0], statuses
    assert statuses[-1]["im"] == "1.29.0", statuses
    assert statuses[-1]["fw"] == statuses[0]["fw"], statuses  # the application's is its own
    after = device.run(300)  # the next boot: read from the boot stage's state
    assert not after.errors, after.errors
    booted = _statuses(sub)[len(statuses):]
    assert booted and booted[0]["bc"] > statuses[-1]["bc"], booted
    assert booted[0]["im"] == "1.29.0", booted


def _statuses(sub) -> list[dict]:
    return [cbor2.loads(p) for p in sub.on("d/dev-a/s") if p != b"0"]
