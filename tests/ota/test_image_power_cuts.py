"""Power cuts during an image update, under both interpreters, at a spread of the flash writes
of each of its two boots (`bench/ota_image_power_cuts.py` cuts at every one): the boot that
installs the image into the other app slot and names it in otadata (the bundle's check, the
slot's erases and writes, the boot stage's state, otadata's erase and write), and the new
image's first boot on trial, which confirms it (the state, a brew before and after, otadata's
rewrite as VALID). After each cut the device boots on from what reached flash until the update
settles; it must then run a whole, valid image: the new one confirmed in otadata and in the
boot stage's state, or, when the cut struck the trial's boot before the confirmation reached
otadata, the previous one, rolled back by the bootloader and recorded so."""

from __future__ import annotations

import pytest
from image_updates import (
    DOWNLOAD,
    TRIAL_BOOT_AND_CONFIRM,
    cut_image_download_at,
    image_bundle_for,
    place_payload,
    settle_after_cut,
    waiting_image_update,
)
from updates import STEPS, feeding, fresh_keys, trusting, writes_of

from musket.espimage import code_like
from musket_sim.device import INTERPRETERS

BOARD = "esp32-sim7080g"
CUT_POINTS = 5  # spread over each boot's writes; the bench script cuts at every one


def spread(writes: int) -> list[int]:
    step = max(1, writes // CUT_POINTS)
    return sorted({1, *range(2, writes, step), writes - 1, writes})


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return fresh_keys(tmp_path_factory.mktemp("keys"))


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_cut_at_any_write_of_an_image_update_leaves_a_valid_slot_booting(
        make_device, keys, tmp_path, interpreter):
    # Code that compresses as firmware does: three segments, each inflated in turn.
    data, app = image_bundle_for(keys, tmp_path, code=code_like(150 * 1024))
    device = make_device(BOARD, ota=True, files=waiting_image_update(keys, data),
                         device_modules=[STEPS])
    place_payload(device, data)
    start = device.image.read_bytes()
    installing = device.run(60, max_boots=1)
    assert installing.boot_log[0].reason == "reset", installing.boot_log
    on_trial = device.image.read_bytes()
    confirming = device.run(60, script=TRIAL_BOOT_AND_CONFIRM, max_boots=1)
    assert "CONFIRMED" in confirming.script_output, confirming.script_output
    assert installing.flash_writes > 20 and confirming.flash_writes > 3
    outcomes = set()
    for baseline, writes, script in ((start, installing.flash_writes, None),
                                     (on_trial, confirming.flash_writes,
                                      TRIAL_BOOT_AND_CONFIRM)):
        for cut in spread(writes):
            device.image.write_bytes(baseline)
            outcome, problem = settle_after_cut(device, cut, script, app)
            assert problem is None, f"cut at write {cut} of {writes}: {problem}"
            outcomes.add(outcome)
    # The cuts before the confirmation reached otadata roll back; the others confirm.
    assert outcomes == {"confirmed", "rolled_back"}, outcomes


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_cut_at_any_write_of_an_image_download_loses_no_byte_that_arrived(
        make_device, keys, tmp_path, interpreter):
    # Code that compresses as firmware does: a payload of several flash blocks in the slot.
    data, app = image_bundle_for(keys, tmp_path, code=code_like(24 * 1024))
    device = make_device(BOARD, ota=True, files={**trusting(keys), **feeding(data)},
                         device_modules=[STEPS])
    baseline = device.image.read_bytes()
    writes = writes_of(device, DOWNLOAD, "DOWNLOADED")
    assert writes > len(data) // 240, writes  # a chunk and a count each, blocks, states
    for cut in spread(writes):
        problem = cut_image_download_at(device, baseline, cut, data, app)
        assert problem is None, problem
