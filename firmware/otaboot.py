# The update's boot stage: which application image the device runs, decided before the
# application starts (main.py runs it first). It installs a downloaded bundle into the spare
# ROMFS partition (app.ota.install), swaps the spare with the "romfs" partition the port runs
# the application from, counts the boots of a version on trial and swaps back when the trial
# fails (docs/ota.md, "On the device").
#
# It lives on the filesystem, outside the images it swaps: the application's bytecode runs in
# place from the romfs partition, so no code from there may run while that partition is being
# rewritten. That is also why it keeps its own state file rather than using app.store: the
# format is the same idea (a whole file, written to a temporary name and renamed, so that a
# cut leaves the old state or the new one).
#
# The swap exchanges the two partitions block by block through a scratch block (the spare's
# last): the live block goes to scratch, the spare's to the live one, scratch to the spare's,
# and the state records each step. A cut at any write is resumed at the next boot from the
# step recorded; every step only reads blocks that no step since the record has written.
#
# An image bundle (the MicroPython firmware itself, on a board built with the OTA layout) is
# written to the other OTA app slot instead, which otadata then names for the next boot
# (esp32.Partition.set_boot()). The ESP-IDF bootloader runs its trial: it boots the slot once
# as PENDING_VERIFY, and boots the previous slot again at any reset before the application
# confirms it (esp32.Partition.mark_app_valid_cancel_rollback(), in confirm()).
import binascii
import json
import os

import esp32
import machine
from micropython import const

STATE = "/ota/state.json"
KEYS = "/ota/keys.json"
BUNDLE = "/ota/bundle"
LIVE = "romfs"
SPARE = "romfs_spare"
FACTORY_VERSION = "0.0.0"  # the image flashed on the line, until the first update confirms
MAX_TRIAL_BOOTS = const(3)  # a version on trial that boots this often unconfirmed is rolled back
_BLOCK = const(4096)
_CHUNK = const(1024)  # bytes copied per step of a block copy
_TRIAL_WDT_MS = const(120000)  # a version on trial that does not feed the watchdog this long

# Phases
IDLE = "idle"  # running `version`
INSTALL = "install"  # a complete bundle waits at BUNDLE
SWAP = "swap"  # swapping: to a version on trial ("forward") or back to the previous one
TRIAL = "trial"  # the new version runs on trial until it confirms itself
SET_BOOT = "set_boot"  # a firmware image is whole in the other app slot: otadata is to name it
IMAGE = "image"  # the kind of a trial of a firmware image (an application's has none)
# The steps of an update the fleet hears of are kept in the state's "phases" until the
# application reported them (app/ota/download.py): "verifying" (the bundle checked), "staged"
# (the new image written to the spare partition), "booting" (the trial's first boot); only
# for an update a campaign sent. Literals, not names: this module's heap is the device's.


def load():
    try:
        with open(STATE) as f:
            state = json.loads(f.read())
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict) or "phase" not in state:
        state = {"phase": IDLE, "version": FACTORY_VERSION}
    return state


def save(state):
    try:
        os.mkdir("/ota")
    except OSError:
        pass  # it exists
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(state))
    os.rename(tmp, STATE)


def _copy_block(src, src_block, dst, dst_block, buf):
    dst.ioctl(6, dst_block)  # erase
    view = memoryview(buf)
    for at in range(0, _BLOCK, _CHUNK):
        src.readblocks(src_block, view, at)
        dst.writeblocks(dst_block, view, at)


def _swap(state, buf):
    # Resumes or runs the swap the state describes, recording each step.
    live = esp32.Partition(LIVE)
    spare = esp32.Partition(SPARE)
    scratch = spare.ioctl(4, 0) - 1
    swap = state["swap"]
    while swap["block"] < swap["blocks"]:
        i = swap["block"]
        step = swap["step"]
        if step == 0:
            _copy_block(live, i, spare, scratch, buf)
        elif step == 1:
            _copy_block(spare, i, live, i, buf)
        else:
            _copy_block(spare, scratch, spare, i, buf)
        if step == 2:
            swap["block"] = i + 1
            swap["step"] = 0
        else:
            swap["step"] = step + 1
        save(state)


def blocks_for(*sizes):
    # Blocks a swap must exchange so that each image, whole, changes place.
    return (max(sizes) + _BLOCK - 1) // _BLOCK


def start_swap(state, direction, blocks):
    state["phase"] = SWAP
    state["swap"] = {"direction": direction, "block": 0, "step": 0, "blocks": blocks}
    save(state)


def _after_swap(state):
    swap = state.pop("swap")
    if swap["direction"] == "forward":
        state["phase"] = TRIAL
        state["boots"] = 0
    else:
        rejected = state.pop("trial")
        state["phase"] = IDLE
        state["last"] = {"version": rejected["version"], "result": "rolled_back",
                         "reason": state.pop("rollback_reason", "trial failed"),
                         "campaign": state.pop("campaign", None)}
    save(state)


def rollback(state, reason):
    """The version on trial failed: swap the previous one back (at the next boot); for a
    firmware image, the bootloader boots the previous slot at the next reset."""
    state["rollback_reason"] = reason
    if state["trial"].get("kind") == IMAGE:
        save(state)
        return
    start_swap(state, "back", state["trial"]["blocks"])


def confirm(state):
    """The version on trial works: it becomes the device's version."""
    trial = state.pop("trial")
    state.pop("boots", None)
    state.pop("phases", None)  # the fleet has them: it confirms only once they were sent
    state["phase"] = IDLE
    if trial.get("kind") == IMAGE:
        # otadata first: a cut before the state's write leaves the slot confirmed and the
        # trial to confirm again at the next boot, never a state that names an image the
        # bootloader is about to roll back.
        esp32.Partition.mark_app_valid_cancel_rollback()
        state["image_previous"] = state.get("image_version", FACTORY_VERSION)
        state["image_version"] = trial["version"]
    else:
        state["previous"] = state.get("version", FACTORY_VERSION)
        state["version"] = trial["version"]
    state["last"] = {"version": trial["version"], "result": "confirmed",
                     "campaign": state.pop("campaign", None)}
    if trial.get("trusted_keys"):
        # Key rotation: the bundle, signed by a key trusted until now, names the keys to
        # trust from here on. Written before the state, so a cut between the two leaves the
        # new keys with the version still on trial, which confirms again.
        tmp = KEYS + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(trial["trusted_keys"]))
        os.rename(tmp, KEYS)
    save(state)


def _remove_bundle():
    try:
        os.remove(BUNDLE)
    except OSError:
        pass  # already gone


def _reject(state, reason):
    if state.get("campaign"):
        state["phases"] = ["verifying"]
    state["phase"] = IDLE
    state["last"] = {"version": None, "result": "rejected", "reason": reason,
                     "campaign": state.pop("campaign", None)}
    save(state)
    _remove_bundle()
    return None


def _install(state, board, trusted_keys, buf):
    # Checks the downloaded bundle and writes its image where its kind goes: the spare romfs
    # partition (then the swap, recorded in the state) or the other app slot (then otadata).
    # A refused bundle is recorded in the state.
    from app.ota import install

    try:
        with open(BUNDLE, "rb") as f:
            manifest, payload_at = install.read_manifest(f, trusted_keys)
            if manifest.get("kind") == IMAGE:
                slot = _install_image(install, f, manifest, payload_at, state, board, buf)
            else:
                blocks = _install_application(install, f, manifest, payload_at, state, board,
                                              buf)
    except install.Rejected as e:
        return _reject(state, str(e))
    except Exception as e:  # noqa: BLE001 - whatever a bundle does, the device must boot on
        # Anything else (an unreadable file, no memory, a fault in the installer) refuses the
        # bundle too: left waiting, it would stop every boot here.
        return _reject(state, "install failed: %s: %s" % (type(e).__name__, e))
    if state.get("campaign"):
        state["phases"] = ["verifying", "staged"]
    if manifest.get("kind") == IMAGE:
        state["trial"] = {"version": manifest["version"], "kind": IMAGE, "slot": slot,
                          "trusted_keys": manifest.get("trusted_keys")}
        state["phase"] = SET_BOOT
        save(state)
    else:
        state["trial"] = {"version": manifest["version"], "blocks": blocks,
                          "trusted_keys": manifest.get("trusted_keys")}
        start_swap(state, "forward", blocks)
    _remove_bundle()


def _install_application(install, f, manifest, payload_at, state, board, buf):
    # -> the number of blocks the swap exchanges.
    live = esp32.Partition(LIVE)
    spare = esp32.Partition(SPARE)
    room = (spare.ioctl(4, 0) - 1) * _BLOCK  # less the scratch block
    running_size = install.romfs_size(live, buf)
    running = (running_size, install.image_digest(live, running_size, buf))
    install.check_rules(manifest, board, state.get("version", FACTORY_VERSION), running, room)
    install.install(f, manifest, payload_at, live, spare, buf)
    return blocks_for(running_size, manifest["image"]["size"])


def _install_image(install, f, manifest, payload_at, state, board, buf):
    # -> the app slot the firmware image went to: the one after the running one.
    try:
        target = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
    except OSError:
        raise install.Rejected("board", "no OTA app slot: the board runs the plain layout")
    info = target.info()
    install.check_rules(manifest, board, state.get("image_version", FACTORY_VERSION), None,
                        info[3])
    install.install(f, manifest, payload_at, None, target, buf)
    return info[4]


def _running_slot():
    return esp32.Partition(esp32.Partition.RUNNING).info()[4]


def _set_boot(state):
    # The image in the trial's slot was checked whole (install): otadata names it, then the
    # device resets into it. A cut before set_boot() landed finds the old slot running and
    # does it again; one after, the new slot running (the bootloader's first boot of it).
    _remove_bundle()  # installed: a cut may have come before _install removed it
    slot = state["trial"]["slot"]
    if _running_slot() == slot:
        state["phase"] = TRIAL
        state["boots"] = 0
        return
    try:
        esp32.Partition(slot).set_boot()
    except OSError as e:
        state.pop("trial")
        _reject(state, "set_boot: %s" % e)
        return
    state["phase"] = TRIAL
    state["boots"] = 0
    save(state)
    machine.reset()


def _image_rolled_back(state):
    # The bootloader booted the previous slot: the image on trial reset before it confirmed
    # itself (it hung, failed, lost power, or asked for its rollback).
    rejected = state.pop("trial")
    state.pop("boots", None)
    state["phase"] = IDLE
    state["last"] = {"version": rejected["version"], "result": "rolled_back",
                     "reason": state.pop("rollback_reason", "not confirmed before a reset: "
                                         "the bootloader booted %s again" % _running_slot()),
                     "campaign": state.pop("campaign", None)}
    save(state)


def trusted_keys():
    # The public keys (32 bytes each) the device takes bundles from: written on the line, and
    # replaced when a version whose bundle listed others is confirmed.
    try:
        with open(KEYS) as f:
            return [binascii.unhexlify(k) for k in json.loads(f.read())]
    except (OSError, ValueError, TypeError):
        return []


def _board_name():
    try:
        with open("/board.json") as f:
            return json.loads(f.read()).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def run():
    """At every boot, before the application: finishes what an update left to do. Returns the
    state; resets the device after a swap, so that the port mounts the image now in place,
    and after set_boot(), so that the bootloader starts the new firmware image."""
    state = load()
    buf = None
    if state["phase"] == INSTALL:
        buf = bytearray(_CHUNK)
        _install(state, _board_name(), trusted_keys(), buf)
    if state["phase"] == SET_BOOT:
        _set_boot(state)
    if state["phase"] == TRIAL and state["trial"].get("kind") == IMAGE and \
            _running_slot() != state["trial"]["slot"]:
        _image_rolled_back(state)
    if state["phase"] == TRIAL:
        state["boots"] = state.get("boots", 0) + 1
        if state["boots"] == 1 and state.get("campaign"):
            state["phases"] = state.get("phases", []) + ["booting"]
        # (An image's trial ends at its second boot: the bootloader's rollback.)
        if state["boots"] > MAX_TRIAL_BOOTS and state["trial"].get("kind") != IMAGE:
            rollback(state, "%d boots without confirming" % MAX_TRIAL_BOOTS)
    if state["phase"] == SWAP:
        _swap(state, buf or bytearray(_CHUNK))
        _after_swap(state)
        machine.reset()
    if state["phase"] == TRIAL:
        save(state)
        # A version that fails as it starts would sit at the REPL for ever, and one that hangs
        # would never boot again: the watchdog resets either, and the boot counts. The
        # application's own watchdog takes it over once it runs.
        machine.WDT(timeout=_TRIAL_WDT_MS)
    return state
