"""Where an image bundle's payload lies in the app slot, and whether it can be inflated there,
is decided twice: by the host when it builds the bundle (musket.ota.image) and by the device
before it writes (app.ota.slots), which cannot import the host's code. These tests hold the
two to the same figures: the payload's offset for every size, the stream and block sizes, and
the same verdict on images that fit, that just fit and that do not.

The firmware module is imported into this process from firmware/ with the sim's stand-in for
`micropython`; `esp32` and `machine`, which only its flash steps use, are empty stand-ins
here. All of it is dropped again afterwards."""

import random
import sys
import types

import pytest
from checksuite import import_with_firmware

from musket.boards import load_board
from musket.ota import image

BOARD = "esp32-sim7080g"
SEED = 4096  # a fixed seed: a failure names the same case on every run


@pytest.fixture(scope="module")
def slots():
    with pytest.MonkeyPatch.context() as patch:
        for name in ("esp32", "machine"):
            patch.setitem(sys.modules, name, types.ModuleType(name))
        yield from import_with_firmware("app.ota.slots")
    sys.modules.pop("otastate", None)


def _room() -> int:
    board = load_board(BOARD)
    return min(p.size for p in board.partitions(True)
               if p.type == "app" and p.subtype.startswith("ota_"))


def test_the_sizes_are_the_same(slots):
    assert slots._SEGMENT == image.SEGMENT_BYTES
    assert slots._FLASH_BLOCK == image.FLASH_BLOCK


def test_the_payload_lies_at_the_same_offset(slots):
    room = _room()
    sizes = [1, image.FLASH_BLOCK - 1, image.FLASH_BLOCK, image.FLASH_BLOCK + 1, room]
    sizes += random.Random(SEED).sample(range(1, room), 500)
    for size in sizes:
        assert slots.payload_offset(room, size) == image.payload_offset(room, size), size


def _segments(image_size: int, ratio: float, rng: random.Random) -> list[int]:
    # The compressed size of each stream of an image of `image_size` bytes, about `ratio` of
    # its image each (a stream of code compresses to about 0.65, an incompressible one grows).
    count = -(-image_size // image.SEGMENT_BYTES)
    out = []
    for k in range(count):
        plain_size = min(image.SEGMENT_BYTES, image_size - k * image.SEGMENT_BYTES)
        out.append(max(1, int(plain_size * ratio * rng.uniform(0.95, 1.05))))
    return out


def test_host_and_device_agree_on_what_installs_in_place(slots):
    board = load_board(BOARD)
    room = _room()
    rng = random.Random(SEED)
    verdicts = {True: 0, False: 0}
    for _ in range(400):
        # Most near the slot's limit, where the verdict turns.
        image_size = rng.randrange(room - 8 * image.SEGMENT_BYTES, room + image.SEGMENT_BYTES)
        segments = _segments(image_size, rng.uniform(0.55, 1.02), rng)
        try:
            image.check_installs_in_place(image_size, segments, board)
            host_fits = True
        except image.ImageError:
            host_fits = False
        device_problem = slots.placement_problem(image_size, segments, sum(segments), room)
        assert host_fits == (device_problem is None), (image_size, segments, device_problem)
        verdicts[host_fits] += 1
    # Both verdicts were tried, many times each.
    assert verdicts[True] > 50 and verdicts[False] > 50, verdicts


def test_the_device_refuses_streams_that_do_not_match_the_image(slots):
    room = _room()
    segments = [40_000, 40_000]
    assert slots.placement_problem(3 * image.SEGMENT_BYTES, segments, 80_000, room)
    assert slots.placement_problem(2 * image.SEGMENT_BYTES, segments, 80_001, room)
    assert slots.placement_problem(2 * image.SEGMENT_BYTES, segments, 80_000, room) is None
