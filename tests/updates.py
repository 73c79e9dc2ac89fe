"""Update bundles for the device-side update tests (tests/ota, tests/uplink): a copy of the
firmware that says it is the update, and the files that put a bundle on a device's flash
waiting for its next boot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from musket import firmware
from musket.boards import load_board
from musket.ota.keys import KeyStore

BOARD = "esp32-sim7080g"
BOOT_LINE = '"boot #%d, reset cause %s, board %s"'
MARKED = '"boot #%d, reset cause %s, board %s, updated"'
UPDATED = ", updated"  # in the boot line of the update's application
CANNOT_START = "this version cannot start"


def marked_firmware(folder: Path, breaking: bool = False) -> Path:
    """A copy of firmware/ whose boot line says it is the update; `breaking`: it also fails
    as it starts, every boot."""
    copy = folder / "firmware"
    shutil.copytree(firmware.firmware_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    main = copy / "app" / "main.py"
    text = main.read_text()
    assert BOOT_LINE in text, "app/main.py's boot line changed: update tests/updates.py"
    text = text.replace(BOOT_LINE, MARKED, 1)
    if breaking:
        text += f"\nraise RuntimeError({CANNOT_START!r})\n"
    main.write_text(text)
    return copy


def trusting(keys: KeyStore) -> dict[str, bytes]:
    """The file that makes a device trust the store's active and trusted keys, as the line
    writes it."""
    return {"ota/keys.json": json.dumps([k.public_key.hex() for k in keys.trusted()]).encode()}


def waiting_update(keys: KeyStore, bundle: bytes, version: str = "1.0.0") -> dict[str, bytes]:
    """Files for a device running `version` that trusts `keys` and has `bundle` downloaded,
    waiting to be installed at its next boot."""
    return {
        **trusting(keys),
        "ota/bundle": bundle,
        "ota/state.json": json.dumps({"phase": "install", "version": version}).encode(),
    }


def state_of(device) -> dict:
    return json.loads(device.read_files()["ota/state.json"])


def boot_lines(device) -> list[str]:
    return [line for line in device.console_log.read_text().splitlines()
            if " I boot: boot #" in line]


def partition_bytes(device, name: str, size: int) -> bytes:
    """The first `size` bytes of a partition of the device's flash."""
    part = load_board(BOARD).partition(name, False)
    with open(device.image, "rb") as f:
        f.seek(part.offset)
        return f.read(size)


def writes_of_update(device) -> int:
    """Flash writes an update waiting on `device` makes up to its trial's first boot (the
    install and the swap, the reset, the boot that counts the trial). The device's flash is
    left as it was."""
    baseline = device.image.read_bytes()
    first = device.run(60, max_boots=2)
    device.image.write_bytes(baseline)
    if [b.reason for b in first.boot_log][:1] != ["reset"]:
        raise AssertionError(f"the first boot did not end in the swap's reset: {first.boot_log}")
    return first.flash_writes


def cut_update_at(device, baseline: bytes, cut: int, new_image: bytes) -> str | None:
    """Cuts the power at flash write `cut` of the update waiting in `baseline` and lets the
    device boot on; None if it ended on the whole new image, on trial, with no boot failing,
    else what went wrong."""
    device.image.write_bytes(baseline)
    result = device.run(60, cut_at_write=cut)  # no modem: the board resets at two minutes
    if "power_cut" not in [b.reason for b in result.boot_log]:
        return f"no cut at write {cut}: {result.boot_log}"
    # A boot of a mixed image would fail as the application imports.
    if result.errors:
        return f"cut at write {cut}: {result.errors}"
    if partition_bytes(device, "romfs", len(new_image)) != new_image:
        return f"cut at write {cut}: the romfs partition is not the new image"
    lines = boot_lines(device)
    if not lines or UPDATED not in lines[-1]:
        return f"cut at write {cut}: the last boot ran {lines[-1:] or 'nothing'}"
    state = state_of(device)
    if state.get("phase") != "trial" or state.get("trial", {}).get("version") != "1.1.0":
        return f"cut at write {cut}: state {state}"
    return None


def put_waiting(device, bundle: bytes) -> None:
    """Puts `bundle` on the device's filesystem as a complete download waiting to be
    installed at its next boot, keeping every other file (the filesystem is written again
    from its files, as a bench tool copying a file would leave it)."""
    from musket import fsimage

    files = device.read_files()
    files["ota/bundle"] = bundle
    state = json.loads(files["ota/state.json"])
    state["phase"] = "install"
    files["ota/state.json"] = json.dumps(state).encode()
    part = load_board(BOARD).filesystem(False)
    image = bytearray(device.image.read_bytes())
    image[part.offset:part.offset + part.size] = fsimage.build(files, part.size)
    device.image.write_bytes(image)


def fresh_keys(folder: Path) -> KeyStore:
    """A key store in `folder` with its first (active) key."""
    store = KeyStore(folder)
    store.generate()
    return store


def signed_update(keys: KeyStore, folder: Path, interpreter: str, **options) -> bytes:
    """A full bundle of version 1.1.0 of the marked firmware (see marked_firmware), signed by
    the store's active key."""
    from musket.ota import release

    options.setdefault("firmware_root", marked_firmware(folder, options.pop("breaking", False)))
    return release.build_release(keys, version=options.pop("version", "1.1.0"),
                                 boards=options.pop("boards", [BOARD]), interpreter=interpreter,
                                 **options).data
