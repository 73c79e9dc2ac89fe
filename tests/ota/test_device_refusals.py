"""Bundles a device must not take, each waiting on its flash at boot: the update's boot stage
refuses it with its reason in the state, deletes it, writes nothing to the image the device
runs, and the application starts on its own version as before."""

from __future__ import annotations

import pytest
from updates import (
    BOARD,
    UPDATED,
    boot_lines,
    fresh_keys,
    marked_firmware,
    partition_bytes,
    state_of,
    waiting_update,
)

from musket.ota import release
from musket.ota.keys import KeyStore
from musket_sim.device import INTERPRETERS


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> KeyStore:
    return fresh_keys(tmp_path_factory.mktemp("keys"))


def _tampered_payload(data: bytes) -> bytes:
    out = bytearray(data)
    out[-10] ^= 0x01  # inside the payload: the signature still holds, the hash does not
    return bytes(out)


def _flipped_signature(data: bytes) -> bytes:
    out = bytearray(data)
    out[20] ^= 0x01  # inside the header's signature
    return bytes(out)


# name -> (release options, what is done to the bundle's bytes, a word of the reason)
CASES = {
    "another board": ({"boards": ["esp32-a7670"]}, None, "board"),
    "an older version": ({"version": "0.9.0"}, None, "not newer"),
    "the same version": ({"version": "1.0.0"}, None, "not newer"),
    "a delta against another base": ({"delta": True}, None, "base"),
    "a payload changed after signing": ({}, _tampered_payload, "payload"),
    "a flipped signature bit": ({}, _flipped_signature, "bad signature"),
    "a truncated bundle": ({}, lambda d: d[:len(d) // 2], "hash"),
    "a running version too old": ({"min_version": "2.0.0"}, None, "needs at least"),
}


def _bundle(keys: KeyStore, folder, interpreter: str, options: dict) -> bytes:
    options = dict(options)
    make = dict(version=options.pop("version", "1.1.0"),
                boards=options.pop("boards", [BOARD]), interpreter=interpreter,
                firmware_root=marked_firmware(folder))
    if options.pop("delta", False):
        # Made against an image the device does not run: the new one, changed again.
        other = release.build_release(keys, version="1.0.5", boards=[BOARD],
                                      interpreter=interpreter, firmware_root=make["firmware_root"])
        base_file = folder / "other.mkot"
        base_file.write_bytes(other.data)
        make["base"] = release.load_base(base_file, keys)
    return release.build_release(keys, **make, **options).data


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("case", list(CASES))
def test_a_bundle_the_device_must_not_take_is_refused_and_nothing_changes(
        make_device, keys, tmp_path, interpreter, case):
    options, damage, reason = CASES[case]
    data = _bundle(keys, tmp_path, interpreter, options)
    if damage is not None:
        data = damage(data)
    device = make_device(files=waiting_update(keys, data))
    running = partition_bytes(device, "romfs", 64 * 1024)
    spare = partition_bytes(device, "romfs_spare", 4096)
    result = device.run(30)
    assert not result.errors, result.errors
    state = state_of(device)
    assert state["phase"] == "idle" and state["version"] == "1.0.0", state
    assert state["last"]["result"] == "rejected", state
    assert reason in state["last"]["reason"], state
    assert "ota/bundle" not in device.read_files()
    assert partition_bytes(device, "romfs", 64 * 1024) == running
    lines = boot_lines(device)
    assert lines and all(UPDATED not in line for line in lines), lines
    if case in ("another board", "an older version", "a flipped signature bit"):
        # Refused before a byte of it was written anywhere.
        assert partition_bytes(device, "romfs_spare", 4096) == spare
