"""Image updates for the device-side tests and benchmarks (tests/ota, bench/): a signed
image bundle of a stand-in MicroPython image, a device with one downloaded, and what a device
must show once an image update, cut by a power failure at some flash write, has settled."""

from __future__ import annotations

from pathlib import Path

from checksuite import call
from updates import BOARD, cut_then_again, state_of, waiting_update

from musket.espimage import code_like
from musket.ota import bundle, image, release
from musket.ota.keys import KeyStore
from musket_sim import bootrom
from musket_sim.chip import _simotadata as otadata
from musket_sim.esp_formats import stand_in_image

NEW_VERSION = "v1.29.0"  # the new image's app description (the factory image says v1.28.0)
TRIAL_BOOT = call("update_steps.trial_boot")
DOWNLOAD = call("update_steps.download", "1.29.0", -1, "image")
TRIAL_BOOT_AND_CONFIRM = call("update_steps.trial_boot_and_confirm")
MAX_SETTLING_BOOTS = 4  # install again, set the boot slot, the trial's boot, one more


def image_bundle_for(keys: KeyStore, folder: Path, payload: int = 48 * 1024,
                     code: bytes | None = None) -> tuple[bytes, bytes]:
    """(an image bundle of version 1.29.0 for the board, the app image it carries): a
    stand-in MicroPython app image with `payload` bytes of code (`code`, if given)."""
    app = stand_in_image("esp32", "micropython", NEW_VERSION, payload_size=payload, code=code)
    path = folder / "firmware.bin"
    path.write_bytes(app)
    made = release.build_image_release(keys, version="1.29.0", boards=[BOARD], firmware=path)
    return made.data, bundle.read_bundle(made.data, keys.public_keys()).image()


def full_size_bundle(keys: KeyStore, folder: Path) -> tuple[bytes, bytes]:
    """An image bundle as large as MicroPython's ESP32 firmware (1.6 MB, about 65 % of it
    compressed)."""
    return image_bundle_for(keys, folder, code=code_like(1_600_000))


def split(data: bytes) -> tuple[bytes, bytes]:
    """(an image bundle's header and manifest, its payload)."""
    length = bundle.HEADER.unpack_from(data)[3]
    return data[:bundle.HEADER_SIZE + length], data[bundle.HEADER_SIZE + length:]


def waiting_image_update(keys: KeyStore, data: bytes) -> dict[str, bytes]:
    """A device's files once it downloaded the image bundle `data` (app/ota/download.py):
    its head on the filesystem; `place_payload` puts the rest where the download does."""
    return waiting_update(keys, split(data)[0])


def place_payload(device, data: bytes) -> None:
    """Writes the image bundle's payload where the download puts it (app/ota/slotsink.py):
    the last blocks of the app slot the device does not run (ota_1: it runs ota_0)."""
    payload = split(data)[1]
    part = device.board.partition("ota_1", True)
    with open(device.image, "r+b") as f:
        f.seek(part.offset + image.payload_offset(part.size, len(payload)))
        f.write(payload)


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


def payload_in_slot(device, data: bytes) -> bool:
    """Whether the image bundle's payload is where the download puts it."""
    payload = split(data)[1]
    part = device.board.partition("ota_1", True)
    with open(device.image, "rb") as f:
        f.seek(part.offset + image.payload_offset(part.size, len(payload)))
        return f.read(len(payload)) == payload


def cut_image_download_at(device, baseline: bytes, cut: int, data: bytes, app: bytes
                          ) -> str | None:
    """Cuts the power at flash write `cut` of the download of the image bundle `data`, lets
    it download again from its checkpoint, then boots the device until the update settled;
    None if the bundle came whole (its head on the filesystem, its payload in the slot) and
    the new image was confirmed, else what went wrong."""
    runs, problem = cut_then_again(device, baseline, cut, DOWNLOAD, "DOWNLOADED")
    if problem:
        return problem
    head = device.read_files().get("ota/bundle")
    if head != split(data)[0] or not payload_in_slot(device, data):
        return f"cut at write {cut}: the bundle is not whole: head {len(head or b'')} bytes"
    if state_of(device).get("phase") != "install":
        return f"cut at write {cut}: state {state_of(device)}"
    for _ in range(MAX_SETTLING_BOOTS):
        run = device.run(60, script=TRIAL_BOOT_AND_CONFIRM, max_boots=1)
        if run.errors:
            return f"cut at write {cut}: a boot failed: {run.errors}"
        if "CONFIRMED" in run.script_output:
            outcome, problem = _settled(device, app)
            return problem and f"cut at write {cut}: {problem}"
    return f"cut at write {cut}: not confirmed: {state_of(device)}"
