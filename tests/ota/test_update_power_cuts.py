"""Power cut during an update: at a spread of flash writes of the install, the swap and the
trial's first boot (`bench/ota_power_cuts.py` cuts at every one), the device boots again,
finishes the update from where flash says it stood, and ends running the new image whole; no
boot runs a mix of the two images."""

from __future__ import annotations

import pytest
from updates import BOARD, cut_update_at, marked_firmware, waiting_update, writes_of_update

from musket.ota import bundle, release
from musket.ota.keys import KeyStore
from musket_sim.device import INTERPRETERS

CUT_POINTS = 12  # spread over the update's writes


@pytest.fixture
def update(tmp_path_factory, interpreter):
    keys = KeyStore(tmp_path_factory.mktemp("keys"))
    keys.generate()
    made = release.build_release(keys, version="1.1.0", boards=[BOARD],
                                 firmware_root=marked_firmware(tmp_path_factory.mktemp("new")),
                                 interpreter=interpreter)
    return keys, made.data, bundle.read_bundle(made.data, keys.public_keys()).image()


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_cut_at_any_write_of_an_update_ends_on_the_whole_new_image(make_device, update,
                                                                     interpreter):
    keys, data, new_image = update
    device = make_device(files=waiting_update(keys, data))
    baseline = device.image.read_bytes()
    writes = writes_of_update(device)
    assert writes > 100, writes  # an image written, three copies per swapped block, states
    step = max(1, writes // CUT_POINTS)
    for cut in [1, 2, *range(3, writes, step), writes - 1, writes]:
        problem = cut_update_at(device, baseline, cut, new_image)
        assert problem is None, problem
