"""Update bundles for the device-side update tests (tests/ota, tests/uplink): a copy of the
firmware that says it is the update, and the files that put a bundle on a device's flash
waiting for its next boot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from musket import firmware
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


def waiting_update(keys: KeyStore, bundle: bytes, version: str = "1.0.0") -> dict[str, bytes]:
    """Files for a device running `version` that trusts `keys` and has `bundle` downloaded,
    waiting to be installed at its next boot."""
    return {
        "ota/keys.json": json.dumps([k.public_key.hex() for k in keys.trusted()]).encode(),
        "ota/bundle": bundle,
        "ota/state.json": json.dumps({"phase": "install", "version": version}).encode(),
    }


def state_of(device) -> dict:
    return json.loads(device.read_files()["ota/state.json"])


def boot_lines(device) -> list[str]:
    return [line for line in device.console_log.read_text().splitlines()
            if " I boot: boot #" in line]
