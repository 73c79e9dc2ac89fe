# The update's boot stage: which application image the device runs, decided before the
# application starts (main.py runs it first). It installs a downloaded bundle into the spare
# ROMFS partition (app.ota.install), swaps the spare with the "romfs" partition the port runs
# the application from, counts the boots of a version on trial and swaps back when the trial
# fails (docs/ota.md, "On the device").
#
# It lives on the filesystem, outside the images it swaps: the application's bytecode runs in
# place from the romfs partition, so no code from there may run while that partition is being
# rewritten. That is also why it keeps its own state file rather than using app.store (its
# reading and writing are otastate.py's, the part the application loads too).
#
# The swap exchanges the two partitions block by block through a scratch block (the spare's
# last): the live block goes to scratch, the spare's to the live one, scratch to the spare's,
# and the state records each step. A cut at any write is resumed at the next boot from the
# step recorded; every step only reads blocks that no step since the record has written.
#
# An image bundle (the MicroPython firmware itself, on a board built with the OTA layout) is
# written to the other OTA app slot instead, which otadata then names for the next boot; the
# ESP-IDF bootloader runs its trial. Those steps are app.ota.slots': they run from the
# application image, which an image update never rewrites, so that this module, which the
# application loads again to confirm or roll back a trial, stays small in its heap.
import binascii
import json

import esp32
import machine
from micropython import const

from otastate import (
    BUNDLE,
    FACTORY_VERSION,
    IDLE,
    IMAGE,
    INSTALL,
    KEYS,
    SET_BOOT,
    SWAP,
    TRIAL,
    load,
    remove_bundle,
    rollback,
    save,
    start_swap,
)

LIVE = "romfs"
SPARE = "romfs_spare"
MAX_TRIAL_BOOTS = const(3)  # a version on trial that boots this often unconfirmed is rolled back
_BLOCK = const(4096)
_CHUNK = const(1024)  # bytes copied per step of a block copy
_TRIAL_WDT_MS = const(120000)  # a version on trial that does not feed the watchdog this long


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


def reject(state, reason):
    if state.get("campaign"):
        state["phases"] = ["verifying"]
    state["phase"] = IDLE
    state["last"] = {"version": None, "result": "rejected", "reason": reason,
                     "campaign": state.pop("campaign", None)}
    save(state)
    remove_bundle()
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
                from app.ota import slots

                trial = slots.install(install, f, manifest, state, board, buf)
            else:
                live = esp32.Partition(LIVE)
                spare = esp32.Partition(SPARE)
                room = (spare.ioctl(4, 0) - 1) * _BLOCK  # less the scratch block
                running_size = install.romfs_size(live, buf)
                running = (running_size, install.image_digest(live, running_size, buf))
                install.check_rules(manifest, board, state.get("version", FACTORY_VERSION),
                                    running, room)
                install.install(f, manifest, payload_at, live, spare, buf)
                trial = {"blocks": blocks_for(running_size, manifest["image"]["size"])}
    except install.Rejected as e:
        return reject(state, str(e))
    except Exception as e:  # noqa: BLE001 - whatever a bundle does, the device must boot on
        # Anything else (an unreadable file, no memory, a fault in the installer) refuses the
        # bundle too: left waiting, it would stop every boot here.
        return reject(state, "install failed: %s: %s" % (type(e).__name__, e))
    trial["version"] = manifest["version"]
    trial["trusted_keys"] = manifest.get("trusted_keys")
    state["trial"] = trial
    if state.get("campaign"):
        state["phases"] = ["verifying", "staged"]
    if "blocks" in trial:
        start_swap(state, "forward", trial["blocks"])
    else:
        state["phase"] = SET_BOOT
        save(state)
    remove_bundle()


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
    if "slot" in state.get("trial", ()):  # an image update: set_boot, or its trial
        from app.ota import slots

        try:
            slots.boot(state)
        except OSError as e:  # set_boot() refused the slot
            reject(state, "set_boot: %s" % e)
    if state["phase"] == TRIAL:
        state["boots"] = state.get("boots", 0) + 1
        if state["boots"] == 1 and state.get("campaign"):
            state["phases"] = state.get("phases", []) + ["booting"]
        # (An image's trial ends at its second boot: the bootloader's rollback.)
        if state["boots"] > MAX_TRIAL_BOOTS and "blocks" in state["trial"]:
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
