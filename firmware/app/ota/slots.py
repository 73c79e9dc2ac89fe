# The boot stage's steps of an image update (otaboot.py, docs/ota.md "Image updates"): the
# MicroPython firmware image goes to the OTA app slot the device does not run, otadata names
# that slot for the next boot (esp32.Partition.set_boot()), and the ESP-IDF bootloader runs
# the trial: it boots the slot once as PENDING_VERIFY and the previous slot again at any reset
# before the application confirms it (confirm()). The download put the bundle's payload in
# that slot already (app/ota/slotsink.py): it is inflated there. Loaded at boot for an image
# update, and by the trial's decision (app/ota/trial.py): unlike an application update,
# nothing here rewrites the romfs partition this module runs from.
import esp32
import machine
import otastate
from micropython import const

_FLASH_BLOCK = const(4096)
_SEGMENT = const(65536)  # the image's bytes per stream of the payload (musket.ota.image)


def next_slot():
    """The app slot an image update goes to. Raises OSError on a board without one."""
    # The port takes BOOT or RUNNING as well as a label (MicroPython's esp32 docs); the stubs
    # know only the label.
    return esp32.Partition(esp32.Partition.RUNNING).get_next_update()  # type: ignore[arg-type]


def payload_offset(room, payload_size):
    # Where the download puts an image bundle's payload in the slot (app/ota/slotsink.py):
    # its last blocks, as far as they can be from the image inflated from the slot's start.
    return room - (payload_size + _FLASH_BLOCK - 1) // _FLASH_BLOCK * _FLASH_BLOCK


def placement_problem(image_size, segments, payload_size, room):
    # Why the payload's streams (`segments`: their compressed sizes) cannot be inflated where
    # the download put them in a slot of `room` bytes, or None: a stream's image must not
    # reach a block that still holds compressed bytes of that stream or a later one. The
    # host's rule is the same (musket.ota.image.check_installs_in_place; a test holds the two
    # to it).
    at = payload_offset(room, payload_size)
    if len(segments) != (image_size + _SEGMENT - 1) // _SEGMENT or \
            sum(segments) != payload_size or at < 0:
        return "the payload's streams do not fit the slot"
    read_from = at
    for k, size in enumerate(segments):
        end = min((k + 1) * _SEGMENT, image_size)
        if (end + _FLASH_BLOCK - 1) // _FLASH_BLOCK > read_from // _FLASH_BLOCK:
            return "stream %d would overwrite its own bytes" % k
        read_from += size
    return None


def install(install, f, manifest, state, board, buf):
    """Checks the image bundle's rules and inflates its payload, which the download put in
    the next app slot, into that slot (`install` is app.ota.install, `f` the bundle's head,
    its manifest read and its signature checked); -> the trial (its kind and slot). Raises
    install.Rejected; the slot then holds nothing of the bundle."""
    try:
        target = next_slot()
    except OSError:
        raise install.Rejected("board", "no OTA app slot: the board runs the plain layout")
    info = target.info()
    room = info[3]
    install.check_rules(manifest, board, state.get("image_version", otastate.FACTORY_VERSION),
                        None, room)
    try:
        _inflate(install, manifest, target, room, state, buf)
    except install.Rejected:
        state.pop("inflated", None)
        for block in range(room // _FLASH_BLOCK):
            target.ioctl(6, block)  # erase: nothing of it may read as an app image
        raise
    state.pop("inflated", None)
    return {"kind": otastate.IMAGE, "slot": info[4]}


def _inflate(install, manifest, target, room, state, buf):
    # The payload's streams, each inflated into the slot's blocks from the start, the count
    # of those done kept in the state: a cut resumes at the stream it struck. The musket
    # host built the bundle so that no stream's image overwrites compressed bytes of its own
    # or of a later stream (musket.ota.image.check_installs_in_place); placement_problem
    # checks it again before anything is written.
    payload = manifest["payload"]
    image = manifest["image"]
    segments = payload.get("segments") or ()
    at = payload_offset(room, payload["size"])
    problem = placement_problem(image["size"], segments, payload["size"], room)
    if problem:
        raise install.Rejected("size", problem)
    done = state.get("inflated")
    if done is None:
        # Every payload byte is the signed one before the first is inflated over.
        if install.image_digest(target, payload["size"], buf, at) != payload["sha256"]:
            raise install.Rejected("hash", "payload does not match its manifest")
        done = state["inflated"] = 0
        otastate.save(state)
    source = install.SlotReader(target)
    read_from = at + sum(segments[:done])
    for k in range(done, len(segments)):
        source.seek(read_from)
        out = install.SlotWriter(target, k * _SEGMENT)
        install.inflate_into(install.Bounded(source, segments[k]), out, buf)
        if out.written != min(_SEGMENT, image["size"] - k * _SEGMENT):
            raise install.Rejected("hash", "stream %d inflates to %d bytes" % (k, out.written))
        read_from += segments[k]
        state["inflated"] = k + 1
        otastate.save(state)
    if install.image_digest(target, image["size"], buf) != image["sha256"]:
        raise install.Rejected("hash", "image does not match its manifest")


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
