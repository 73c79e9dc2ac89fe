# The update's state (docs/ota.md, "On the device"): what the boot stage (otaboot.py) and the
# application (app/ota/download.py, app/ota/trial.py) read and write about an update under
# way, and the decisions the application takes on a version on trial. A module of its own,
# outside the images an update rewrites, and apart from the boot stage's install and swap, so
# that the application, which loads it while it runs, holds only this much of it in its heap.
#
# The state is a whole file, written to a temporary name and renamed, so that a cut leaves the
# old state or the new one (the same idea as app.store, which lives in the application image
# and so cannot serve the boot stage while that image is rewritten).
import json
import os

STATE = "/ota/state.json"
KEYS = "/ota/keys.json"
BUNDLE = "/ota/bundle"
IMAGE_BLOCK = "/ota/block"  # an image bundle's download checkpoint (app/ota/slotsink.py)
FACTORY_VERSION = "0.0.0"  # the image flashed on the line, until the first update confirms

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


def start_swap(state, direction, blocks):
    state["phase"] = SWAP
    state["swap"] = {"direction": direction, "block": 0, "step": 0, "blocks": blocks}
    save(state)


def rollback(state, reason):
    """The version on trial failed: swap the previous one back (at the next boot)."""
    state["rollback_reason"] = reason
    start_swap(state, "back", state["trial"]["blocks"])


def confirm(state, prefix=""):
    """The version on trial works: it becomes the device's version (`prefix` "image_": its
    firmware image's, app.ota.slots)."""
    trial = state.pop("trial")
    state.pop("boots", None)
    state.pop("phases", None)  # the fleet has them: it confirms only once they were sent
    state["phase"] = IDLE
    state[prefix + "previous"] = state.get(prefix + "version", FACTORY_VERSION)
    state[prefix + "version"] = trial["version"]
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


def remove_bundle():
    for path in (BUNDLE, IMAGE_BLOCK):
        try:
            os.remove(path)
        except OSError:
            pass  # already gone, or never there
