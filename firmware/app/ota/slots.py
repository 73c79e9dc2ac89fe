# The boot stage's steps of an image update (otaboot.py, docs/ota.md "Image updates"): the
# MicroPython firmware image goes to the OTA app slot the device does not run, otadata names
# that slot for the next boot (esp32.Partition.set_boot()), and the ESP-IDF bootloader runs
# the trial: it boots the slot once as PENDING_VERIFY and the previous slot again at any reset
# before the application confirms it (confirm()). Loaded at boot for an image update, and by
# the trial's decision (app/ota/trial.py): unlike an application update, nothing here
# rewrites the romfs partition this module runs from.
import esp32
import machine
import otastate


def install(install, f, manifest, payload_at, state, board, buf):
    """Checks the image bundle's rules and streams its image into the next app slot (`install`
    is app.ota.install, `f` the bundle, its manifest read and its signature checked); -> the
    trial (its kind and slot). Raises install.Rejected."""
    try:
        # The port takes BOOT or RUNNING as well as a label (MicroPython's esp32 docs); the
        # stubs know only the label.
        running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]
        target = running.get_next_update()
    except OSError:
        raise install.Rejected("board", "no OTA app slot: the board runs the plain layout")
    info = target.info()
    install.check_rules(manifest, board, state.get("image_version", otastate.FACTORY_VERSION),
                        None, info[3])
    try:
        install.install(f, manifest, payload_at, None, target, buf)
    except install.Rejected:
        # What was written is not the image the manifest promised: its first block goes, so
        # that nothing of it reads as an app image (the bootloader would pass over it anyway).
        target.ioctl(6, 0)
        raise
    return {"kind": otastate.IMAGE, "slot": info[4]}


def _running_slot():
    return esp32.Partition(esp32.Partition.RUNNING).info()[4]  # type: ignore[arg-type]


def boot(state):
    """At a boot in phase set_boot, or on an image's trial: names the new slot in otadata and
    resets into it, or finds which slot the bootloader started. Raises OSError when
    set_boot() refuses the slot (the trial is dropped from `state`)."""
    if state["phase"] == otastate.SET_BOOT:
        _set_boot(state)
    elif _running_slot() != state["trial"]["slot"]:
        _rolled_back(state)


def _set_boot(state):
    # The image in the trial's slot was checked whole (install): otadata names it, then the
    # device resets into it. A cut before set_boot() landed finds the old slot running and
    # does it again; one after, the new slot running (the bootloader's first boot of it).
    otastate.remove_bundle()  # installed: a cut may have come before the install removed it
    slot = state["trial"]["slot"]
    state["phase"] = otastate.TRIAL
    state["boots"] = 0
    if _running_slot() == slot:
        return  # the trial's first boot counts it
    try:
        esp32.Partition(slot).set_boot()
    except OSError:
        # The boot stage refuses the update (otaboot.py): the image stays off.
        state.pop("trial")
        state.pop("boots")
        raise
    otastate.save(state)
    machine.reset()


def _rolled_back(state):
    # The bootloader booted the previous slot: the image on trial reset before it confirmed
    # itself (it hung, failed, lost power, or asked for its rollback).
    rejected = state.pop("trial")
    state.pop("boots", None)
    state["phase"] = otastate.IDLE
    state["last"] = {"version": rejected["version"], "result": "rolled_back",
                     "reason": state.pop("rollback_reason", "not confirmed before a reset: "
                                         "the bootloader booted %s again" % _running_slot()),
                     "campaign": state.pop("campaign", None)}
    otastate.save(state)


def confirm(state):
    """The image on trial works (app/ota/trial.py): otadata first, so that a cut before the
    state's write leaves the slot confirmed and the trial to confirm again at the next boot,
    never a state that names an image the bootloader is about to roll back."""
    esp32.Partition.mark_app_valid_cancel_rollback()
    otastate.confirm(state, "image_")


def rollback(state, reason):
    """The image on trial failed (app/ota/trial.py, which then resets): the bootloader boots
    the previous slot; the boot stage there records why."""
    state["rollback_reason"] = reason
    otastate.save(state)
