"""The delta (musket.ota.delta) applied by the device's own applier (firmware/app/ota/delta.py,
imported here under CPython): random pairs, and real images of the firmware before and after a
one-line change."""

from __future__ import annotations

import io
import random
import shutil

import pytest
from checksuite import import_with_firmware
from mutations import edited

from musket import firmware
from musket.ota import bundle, delta, image


@pytest.fixture(scope="module")
def applier():
    """app.ota.delta from firmware/, with the sim's stand-in for `micropython`."""
    yield from import_with_firmware("app.ota.delta")


def rebuild(applier, base: bytes, ops: bytes, size: int) -> bytes:
    out = io.BytesIO()
    applier.apply(io.BytesIO(ops), io.BytesIO(base), out, bytearray(512), size, len(base))
    return out.getvalue()


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**21, 2**35 - 1])
def test_varints_are_leb128(applier, value):
    encoded = delta.varint(value)
    assert len(encoded) <= 5 and encoded[-1] < 0x80
    assert sum((b & 0x7F) << (7 * i) for i, b in enumerate(encoded)) == value


def test_a_varint_past_five_bytes_is_refused():
    with pytest.raises(ValueError):
        delta.varint(2**35)


@pytest.mark.parametrize("seed", range(30))
def test_random_pairs_round_trip(applier, seed):
    rng = random.Random(seed)
    size = rng.choice([0, 1, 17, 1000, 20000])
    alphabet = rng.choice([b"ab", b"abcdefghij\n", bytes(range(256))])
    base = bytes(rng.choice(alphabet) for _ in range(size))
    new = edited(base, rng, rng.randrange(12)) if base else rng.randbytes(rng.randrange(0, 300))
    ops = delta.make_delta(base, new)
    assert rebuild(applier, base, ops, len(new)) == new


def test_identical_images_are_one_copy():
    data = random.Random(1).randbytes(5000)
    assert delta.make_delta(data, data) == b"\x01\x00\x88\x27\x00"


@pytest.fixture(scope="module")
def one_line_change(tmp_path_factory):
    """(image of firmware/, image of a copy of it with one log message changed)."""
    copy = tmp_path_factory.mktemp("firmware") / "firmware"
    shutil.copytree(firmware.firmware_dir(), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    source = copy / "app" / "counter.py"
    text = source.read_text()
    line = next(line for line in text.splitlines() if 'log.' in line and '"' in line)
    changed = line.replace('"', '"note: ', 1)
    source.write_text(text.replace(line, changed, 1))
    return (image.application_image("micropython"),
            image.application_image("micropython", copy))


def test_a_one_line_change_is_a_delta_of_a_few_hundred_bytes(applier, one_line_change):
    old, new = one_line_change
    assert old.data != new.data
    ops = delta.make_delta(old.data, new.data)
    assert rebuild(applier, old.data, ops, len(new.data)) == new.data
    payload = bundle.compress(ops)
    assert len(payload) < 1000, len(payload)
    assert len(payload) < len(bundle.compress(new.data)) // 30


def test_the_image_is_the_build_romfs_image(one_line_change):
    """The update's image is what `musket build` puts in the romfs partition, less padding."""
    old, _ = one_line_change
    padded = firmware.build_romfs(old.files, 256 * 1024)
    assert padded[:len(old.data)] == old.data
    assert set(padded[len(old.data):]) == {0xFF}
    assert all(path.endswith(".mpy") for path in old.files)


def test_the_cpython_image_holds_the_same_modules_as_sources(one_line_change):
    old, _ = one_line_change
    sources = image.application_image("cpython")
    assert {p[:-3] for p in sources.files} == {p[:-4] for p in old.files}
