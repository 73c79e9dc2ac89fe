"""Updates of the MicroPython firmware image on a virtual device with the OTA layout: the
boot stage (firmware/otaboot.py) checks the image bundle's signature, streams the image into
the other app slot (esp32.Partition.get_next_update()), names it in otadata (set_boot()) and
resets; the simulator's boot stage, as ESP-IDF's bootloader with app rollback, checks the
image (header, checksum, SHA-256), boots it once as PENDING_VERIFY and keeps it only if the
application confirmed it (mark_app_valid_cancel_rollback()) before the next reset. The images
are stand-ins (the unix port runs in their place); which slot booted, and the image's version
there, is what the simulator's boot stage read."""

from __future__ import annotations

import pytest
from checksuite import call
from image_updates import (
    NEW_VERSION,
    TRIAL_BOOT,
    TRIAL_BOOT_AND_CONFIRM,
    image_bundle_for,
    otadata_of,
    place_payload,
    slot_holds,
    waiting_image_update,
)
from updates import BOARD, STEPS, fresh_keys, state_of

from musket.ota import bundle
from musket_sim.chip import _simotadata as otadata


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return fresh_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory, keys) -> tuple[bytes, bytes]:
    return image_bundle_for(keys, tmp_path_factory.mktemp("image"))


def test_an_image_bundle_is_signed_compressed_and_checked_like_the_others(image_bundle, keys):
    data, app = image_bundle
    found = bundle.read_bundle(data, keys.public_keys())
    assert found.kind == "image" and found.manifest["layout"] == "ota"
    assert found.image() == app and len(found.payload) < len(app)
    damaged = bytearray(data)
    damaged[-10] ^= 1
    with pytest.raises(bundle.BundleError, match="payload mismatch"):
        bundle.read_bundle(bytes(damaged), keys.public_keys())


def test_an_image_update_is_installed_and_confirmed(make_device, keys, image_bundle):
    data, app = image_bundle
    device = make_device(BOARD, ota=True, files=waiting_image_update(keys, data),
                         device_modules=[STEPS])
    place_payload(device, data)
    first = device.run(60, max_boots=1)  # the boot stage installs, sets the boot slot, resets
    assert not first.errors, first.errors
    assert [(b.app, b.reason) for b in first.boot_log] == [("ota_0", "reset")]
    assert slot_holds(device, "ota_1", app)
    assert (otadata_of(device)[1].seq, otadata_of(device)[1].state) == (2, otadata.NEW)
    assert "ota/bundle" not in device.read_files()

    trial = device.run(60, script=TRIAL_BOOT_AND_CONFIRM)
    assert not trial.errors, trial.errors
    assert "PHASE trial" in trial.script_output and "CONFIRMED" in trial.script_output, \
        trial.script_output
    assert device.last_boot.app == "ota_1" and device.last_boot.image.version == NEW_VERSION
    assert otadata_of(device)[1].state == otadata.VALID
    state = state_of(device)
    assert state["phase"] == "idle" and state["image_version"] == "1.29.0", state
    assert state["version"] == "1.0.0", state  # the application's version is its own
    assert state["last"]["result"] == "confirmed", state

    again = device.run(60, script=TRIAL_BOOT)  # confirmed: it stays
    assert [b.app for b in again.boot_log] == ["ota_1"]
    assert "PHASE idle" in again.script_output


def test_an_image_that_never_confirms_is_rolled_back_by_the_bootloader(
        make_device, keys, image_bundle):
    data, _ = image_bundle
    device = make_device(BOARD, ota=True, files=waiting_image_update(keys, data),
                         device_modules=[STEPS])
    place_payload(device, data)
    device.run(60, max_boots=1)
    trial = device.run(60, script=TRIAL_BOOT)  # the trial's boot, never confirmed
    assert [b.app for b in trial.boot_log] == ["ota_1"], trial.boot_log
    assert otadata_of(device)[1].state == otadata.PENDING_VERIFY
    after = device.run(60, script=TRIAL_BOOT)  # the next boot
    assert not after.errors, after.errors
    assert [b.app for b in after.boot_log] == ["ota_0"], after.boot_log
    assert device.last_boot.image.version != NEW_VERSION
    assert otadata_of(device)[1].state == otadata.ABORTED
    state = state_of(device)
    assert state["phase"] == "idle" and state.get("image_version") is None, state
    assert state["last"]["result"] == "rolled_back", state
    assert "bootloader booted ota_0 again" in state["last"]["reason"], state


def test_an_image_bundle_whose_payload_was_changed_is_refused_and_its_bytes_erased(
        make_device, keys, image_bundle):
    data, app = image_bundle
    changed = bytearray(data)
    changed[-100] ^= 0x01  # in the payload: the signature (over the manifest) still holds
    device = make_device(BOARD, ota=True, files=waiting_image_update(keys, bytes(changed)),
                         device_modules=[STEPS])
    place_payload(device, bytes(changed))
    result = device.run(60, script=TRIAL_BOOT)
    assert not result.errors, result.errors
    state = state_of(device)
    assert state["last"]["result"] == "rejected" and "hash" in state["last"]["reason"], state
    assert [b.app for b in result.boot_log] == ["ota_0"]
    assert otadata_of(device)[1].seq == otadata.EMPTY  # otadata never named the slot
    part = device.board.partition("ota_1", True)
    with open(device.image, "rb") as f:
        f.seek(part.offset)
        assert f.read(part.size) == b"\xff" * part.size  # nothing of it stays
    assert device.run(5, script=TRIAL_BOOT).boot_log[0].app == "ota_0"


def test_an_image_bundle_on_the_plain_layout_is_refused(make_device, keys, image_bundle):
    data, _ = image_bundle
    device = make_device(BOARD, files=waiting_image_update(keys, data), device_modules=[STEPS])
    result = device.run(60, script=TRIAL_BOOT)
    assert not result.errors, result.errors
    state = state_of(device)
    assert state["last"]["result"] == "rejected", state
    assert "no OTA app slot" in state["last"]["reason"], state
    assert [b.app for b in result.boot_log] == ["factory"]


@pytest.mark.parametrize("ota, size, answer", [
    (False, 100_000, "REFUSED board: no OTA app slot for an image (the board runs the plain "
                     "layout)"),
    (True, 1728 * 1024 + 81, "REFUSED no room: the bundle has 1769553 bytes, the app slot "
                             "takes 1769552"),
    (True, 1728 * 1024 + 80, "TAKEN"),  # larger than the filesystem: it goes to the slot
])
def test_an_image_offer_is_refused_at_once_where_it_cannot_go(make_device, ota, size, answer):
    device = make_device(BOARD, ota=ota, device_modules=[STEPS])
    result = device.run(10, script=call("update_steps.offer", "image", size))
    assert answer in result.script_output, result.script_output
    assert "ota/block" not in device.read_files()
