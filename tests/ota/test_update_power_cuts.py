"""Power cut during an update, at a spread of the flash writes of each of its steps
(`bench/ota_power_cuts.py` cuts at every one): the download (the offer, each chunk, the
bundle's completion), the install of a full bundle and of a delta (the patching), the swap,
the trial's first boot and the confirmation. After each cut the device boots a whole image,
finishes the update from where flash says it stood and ends on the new image; its counter,
committing brews between the download's and the confirmation's writes, keeps every brew it
committed."""

from __future__ import annotations

import pytest
from updates import (
    BOARD,
    CONFIRM,
    DOWNLOAD,
    STEPS,
    cut_confirmation_at,
    cut_download_at,
    cut_update_at,
    delta_update,
    feeding,
    marked_firmware,
    trusting,
    waiting_update,
    writes_of,
    writes_of_update,
)

from musket.ota import bundle, image, release
from musket.ota.keys import KeyStore
from musket_sim.device import INTERPRETERS

pytestmark = pytest.mark.slow  # dozens of device runs each

CUT_POINTS = 8  # spread over each step's writes
COMPLETION_WRITES = 24  # a download's last chunk, count and completion take fewer writes


def spread(writes: int) -> list[int]:
    """The cut points of a step of `writes` flash writes: its first writes, its last, and
    others spread between."""
    step = max(1, writes // CUT_POINTS)
    return sorted({1, 2, *range(3, writes, step), writes - 1, writes})


@pytest.fixture
def keys(tmp_path_factory):
    store = KeyStore(tmp_path_factory.mktemp("keys"))
    store.generate()
    return store


@pytest.fixture
def full(tmp_path_factory, keys, interpreter):
    made = release.build_release(keys, version="1.1.0", boards=[BOARD],
                                 firmware_root=marked_firmware(tmp_path_factory.mktemp("new")),
                                 interpreter=interpreter)
    return made.data, bundle.read_bundle(made.data, keys.public_keys()).image()


@pytest.fixture
def delta(tmp_path_factory, keys, interpreter, full):
    return delta_update(keys, tmp_path_factory.mktemp("delta"), interpreter)


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_cut_at_any_write_of_an_install_and_swap_ends_on_the_whole_new_image(
        make_device, keys, full, interpreter):
    data, new_image = full
    device = make_device(files=waiting_update(keys, data), device_modules=[STEPS])
    baseline = device.image.read_bytes()
    writes = writes_of_update(device)
    assert writes > 100, writes  # an image written, three copies per swapped block, states
    for cut in spread(writes):
        problem = cut_update_at(device, baseline, cut, new_image, counts=0)
        assert problem is None, problem


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_cut_at_any_write_of_a_delta_install_ends_on_the_whole_new_image(
        make_device, keys, full, delta, interpreter):
    _, new_image = full
    device = make_device(files=waiting_update(keys, delta))
    baseline = device.image.read_bytes()
    writes = writes_of_update(device)
    for cut in spread(writes):
        problem = cut_update_at(device, baseline, cut, new_image)
        assert problem is None, problem


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_cut_at_any_write_of_a_download_loses_no_chunk_and_no_count(
        make_device, keys, full, delta, interpreter):
    _, new_image = full
    device = make_device(files={**trusting(keys), **feeding(delta)}, device_modules=[STEPS])
    old_image = image.application_image(interpreter).data
    baseline = device.image.read_bytes()
    writes = writes_of(device, DOWNLOAD, "DOWNLOADED")
    assert writes > len(delta) // 240, writes  # a chunk and a count each, the offer, states
    # Every write of the completion (the last chunk's, the rename, the state, the offer's
    # removal): a cut between the last chunk and the rename once left a device asking for
    # nothing, for ever.
    completion = range(writes - COMPLETION_WRITES, writes + 1)
    for cut in sorted({*spread(writes), *completion}):
        problem = cut_download_at(device, baseline, cut, delta, old_image, new_image)
        assert problem is None, problem


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_cut_at_any_write_of_the_confirmation_ends_confirmed(
        make_device, keys, full, delta, interpreter):
    _, new_image = full
    device = make_device(files=waiting_update(keys, delta), device_modules=[STEPS])
    device.run(60)  # installed, swapped, on trial
    baseline = device.image.read_bytes()
    writes = writes_of(device, CONFIRM, "CONFIRMED")
    for cut in range(1, writes + 1):  # a few: two counts, the keys, the state
        problem = cut_confirmation_at(device, baseline, cut, new_image)
        assert problem is None, problem
