"""Image updates for the device-side tests and benchmarks (tests/ota, bench/): a signed
image bundle of a stand-in MicroPython image, and what a device must show once an image
update, cut by a power failure at some flash write, has settled."""

from __future__ import annotations

from pathlib import Path

from checksuite import call
from updates import BOARD, state_of

from musket.ota import bundle, release
from musket.ota.keys import KeyStore
from musket_sim import bootrom
from musket_sim.chip import _simotadata as otadata
from musket_sim.esp_formats import stand_in_image

NEW_VERSION = "v1.29.0"  # the new image's app description (the factory image says v1.28.0)
TRIAL_BOOT = call("update_steps.trial_boot")
TRIAL_BOOT_AND_CONFIRM = call("update_steps.trial_boot_and_confirm")
MAX_SETTLING_BOOTS = 4  # install again, set the boot slot, the trial's boot, one more


def image_bundle_for(keys: KeyStore, folder: Path, payload: int = 48 * 1024
                     ) -> tuple[bytes, bytes]:
    """(an image bundle of version 1.29.0 for the board, the app image it carries): a
    stand-in MicroPython app image with `payload` bytes of code."""
    app = stand_in_image("esp32", "micropython", NEW_VERSION, payload_size=payload)
    path = folder / "firmware.bin"
    path.write_bytes(app)
    made = release.build_image_release(keys, version="1.29.0", boards=[BOARD], firmware=path)
    return made.data, bundle.read_bundle(made.data, keys.public_keys()).image()


def otadata_of(device) -> list:
    part = device.board.partition("otadata", True)
    return bootrom.read_otadata(device.image.read_bytes(), part)


def slot_holds(device, slot: str, app: bytes) -> bool:
    part = device.board.partition(slot, True)
    with open(device.image, "rb") as f:
        f.seek(part.offset)
        return f.read(len(app)) == app


def settle_after_cut(device, cut: int, script: str | None, app: bytes
                     ) -> tuple[str | None, str | None]:
    """Runs one boot of the update on `device` (`script`, or main.py's boot stage when None)
    with the power cut at flash write `cut`, then boots it as main.py's boot stage and a
    trial that confirms would, until the update settled. -> ("confirmed" or "rolled_back",
    None), or (None, what went wrong)."""
    cut_run = device.run(60, script=script, cut_at_write=cut, max_boots=1)
    if cut_run.exit_reason != "power_cut":
        return None, f"no cut: {cut_run.boot_log}"
    for _ in range(MAX_SETTLING_BOOTS):
        run = device.run(60, script=TRIAL_BOOT_AND_CONFIRM, max_boots=1)
        if run.errors:
            return None, f"a boot failed: {run.errors}"
        if "PHASE idle" in run.script_output or "CONFIRMED" in run.script_output:
            break
    else:
        return None, f"not settled after {MAX_SETTLING_BOOTS} boots: {state_of(device)}"
    return _settled(device, app)


def _settled(device, app: bytes) -> tuple[str | None, str | None]:
    state = state_of(device)
    booted = device.last_boot
    entries = otadata_of(device)
    active = otadata.active(entries)
    if not booted.bootable or active == -1:
        return None, f"booted {booted.app} with otadata {[e.state for e in entries]}"
    if state.get("image_version") == "1.29.0":
        if booted.app != "ota_1" or booted.image.version != NEW_VERSION or \
                not slot_holds(device, "ota_1", app):
            return None, f"confirmed, but {booted.app} booted {booted.image.version}"
        if entries[active].state != otadata.VALID or \
                state.get("last", {}).get("result") != "confirmed":
            return None, f"confirmed, but otadata {entries[active].state}, state {state}"
        return "confirmed", None
    if state.get("last", {}).get("result") == "rolled_back" and booted.app == "ota_0" and \
            booted.image.version != NEW_VERSION and state.get("phase") == "idle":
        return "rolled_back", None
    return None, f"{booted.app} booted {booted.image.version}, state {state}"
