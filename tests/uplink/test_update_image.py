"""An image update from the fleet to a device built with the OTA layout, over a real
Mosquitto: offered and pulled as any bundle, installed into the other app slot by the boot
stage, booted on trial by the simulated bootloader, and confirmed by the application itself
(app/ota/trial.py: mark_app_valid_cancel_rollback() once the broker acknowledged a session),
so that it stays at the boots after."""

from __future__ import annotations

import pytest
from conftest import device_files, serve_update
from image_updates import NEW_VERSION, image_bundle_for, otadata_of
from updates import fresh_keys, state_of, trusting

from musket_sim.chip import _simotadata as otadata
from musket_sim.device import INTERPRETERS
from musket_sim.scenario import load_scenario


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_an_offered_image_update_is_confirmed_by_the_application(
        make_device, mosquitto, tmp_path, interpreter):
    keys = fresh_keys(tmp_path / "keys")
    bundle, _ = image_bundle_for(keys, tmp_path)
    device = make_device(files={**device_files("dev-a", mosquitto.port), **trusting(keys)},
                         modem=load_scenario("good"), ota=True)
    device.run(300)
    result, served = serve_update(device, mosquitto.port, "img-1", "1.29.0", bundle,
                                  "confirmed")
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
