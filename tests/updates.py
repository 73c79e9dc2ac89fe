"""Update bundles for the device-side update tests (tests/ota, tests/uplink): a copy of the
firmware that says it is the update, and the files that put a bundle on a device's flash
waiting for its next boot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from checksuite import call

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
    return keys.device_file()


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


def cut_update_at(device, baseline: bytes, cut: int, new_image: bytes,
                  counts: int | None = None) -> str | None:
    """Cuts the power at flash write `cut` of the update waiting in `baseline` and lets the
    device boot on; None if it ended on the whole new image, on trial, with no boot failing
    (and, given `counts`, its counter holding that many brews), else what went wrong."""
    device.image.write_bytes(baseline)
    result = device.run(60, cut_at_write=cut)  # no modem: the board resets at two minutes
    if "power_cut" not in [b.reason for b in result.boot_log]:
        return f"no cut at write {cut}: {result.boot_log}"
    problem = _on_trial(device, result, new_image)
    if problem is None and counts is not None and brews(device) != counts:
        problem = f"the counter holds {brews(device)} brews, {counts} were committed"
    return problem and f"cut at write {cut}: {problem}"


def _on_trial(device, result, new_image: bytes) -> str | None:
    """None if the device's last run ended on the whole new image, on trial, with no boot
    failing, else what went wrong."""
    # A boot of a mixed image would fail as the application imports.
    if result.errors:
        return str(result.errors)
    if partition_bytes(device, "romfs", len(new_image)) != new_image:
        return "the romfs partition is not the new image"
    lines = boot_lines(device)
    if not lines or UPDATED not in lines[-1]:
        return f"the last boot ran {lines[-1:] or 'nothing'}"
    state = state_of(device)
    if state.get("phase") != "trial" or state.get("trial", {}).get("version") != "1.1.0":
        return f"state {state}"
    return None


# -- the download and the confirmation, driven by a device-side module ----------------------

STEPS = Path(__file__).parent / "ota" / "checks" / "update_steps.py"
DOWNLOAD = call("update_steps.download", "1.1.0")
CONFIRM = call("update_steps.confirm")


def feeding(bundle: bytes) -> dict[str, bytes]:
    """The file the download steps serve `bundle` from, as the fleet would."""
    return {"feed/bundle": bundle}


def brews(device) -> int:
    """The brews the device's counter holds, as its next boot opens them."""
    return int(_printed(device.run(60, script=call("update_steps.counts")), "COUNTS") or -1)


def _printed(result, word: str) -> str | None:
    """What the last line starting with `word` said after it, or None."""
    lines = [ln for ln in result.script_output.splitlines() if ln.startswith(word)]
    return lines[-1][len(word):].strip() if lines else None


def _committed(result, before: int) -> int:
    """Brews the steps said were committed by the end of `result` (`before`: until then)."""
    return int(_printed(result, "COMMITTED") or before)


def writes_of(device, script: str, done: str) -> int:
    """Flash writes `script` makes on `device` (a step of update_steps that prints `done`
    when it finished); the device's flash is left as it was."""
    baseline = device.image.read_bytes()
    result = device.run(60, script=script, max_boots=1)
    device.image.write_bytes(baseline)
    if _printed(result, done) is None or result.errors:
        raise AssertionError(f"{script!r} did not finish: {result.script_output[-500:]} "
                             f"{result.errors}")
    return result.flash_writes


def cut_then_again(device, baseline: bytes, cut: int, script: str, done: str):
    """Cuts `script` at flash write `cut`, runs it again uncut; -> (the cut run, the brews
    committed by the end, whether a count was under way at the cut, or a problem)."""
    device.image.write_bytes(baseline)
    cut_run = device.run(60, script=script, cut_at_write=cut, max_boots=1)
    if cut_run.exit_reason != "power_cut":
        return None, f"no cut at write {cut}: {cut_run.boot_log}"
    before = _committed(cut_run, 0)
    again = device.run(60, script=script, max_boots=1)
    if _printed(again, done) is None or again.errors:
        return None, f"run again after the cut: {again.script_output[-300:]} {again.errors}"
    return (cut_run, before, _committed(again, -1)), None


def _lost(device, before: int, after: int) -> str | None:
    """None if the counter holds what the steps committed: `after` if they committed more
    after the cut, else `before` or the use a cut interrupted (`before` + 1)."""
    held = brews(device)
    want = {after} if after >= 0 else {before, before + 1}
    return None if held in want else f"the counter holds {held} brews, committed {sorted(want)}"


def cut_download_at(device, baseline: bytes, cut: int, bundle: bytes, old_image: bytes,
                    new_image: bytes) -> str | None:
    """Cuts the power at flash write `cut` of the download of `bundle` (the device counting a
    brew after each chunk), then lets it download again from its checkpoint and boot; None if
    the cut left the running image alone, the bundle came whole, the update ended on the new
    image on trial and the counter lost no brew, else what went wrong."""
    runs, problem = cut_then_again(device, baseline, cut, DOWNLOAD, "DOWNLOADED")
    if problem:
        return problem
    _, before, after = runs
    if partition_bytes(device, "romfs", len(old_image)) != old_image:
        return f"cut at write {cut}: the running image changed"
    files = device.read_files()
    if files.get("ota/bundle") != bundle or state_of(device).get("phase") != "install":
        return f"cut at write {cut}: no whole bundle waits: {sorted(files)} {state_of(device)}"
    problem = _lost(device, before, after)
    if problem is None:
        problem = _on_trial(device, device.run(60), new_image)
    return problem and f"cut at write {cut}: {problem}"


def cut_confirmation_at(device, baseline: bytes, cut: int, new_image: bytes) -> str | None:
    """Cuts the power at flash write `cut` of the confirmation of the version on trial in
    `baseline` (a brew counted before and after it), boots the application, confirms again;
    None if every boot ran the whole new image, it ended confirmed and the counter lost no
    brew, else what went wrong."""
    runs, problem = cut_then_again(device, baseline, cut, CONFIRM, "CONFIRMED")
    if problem:
        return problem
    cut_run, before, after = runs
    if partition_bytes(device, "romfs", len(new_image)) != new_image:
        return f"cut at write {cut}: the romfs partition is not the new image"
    state = state_of(device)
    if state.get("phase") != "idle" or state.get("version") != "1.1.0" or \
            state.get("last", {}).get("result") != "confirmed":
        return f"cut at write {cut}: state {state}"
    problem = _lost(device, before, after)
    if problem is None:
        booted = device.run(60)  # no modem: the board resets at two minutes
        lines = boot_lines(device)
        if booted.errors or not lines or UPDATED not in lines[-1]:
            problem = f"the boot after ran {lines[-1:]} {booted.errors}"
    return problem and f"cut at write {cut}: {problem}"


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


def delta_update(keys: KeyStore, folder: Path, interpreter: str) -> bytes:
    """A delta bundle of version 1.1.0 of the marked firmware against the image a fresh
    virtual device runs, signed by the store's active key."""
    from musket.ota import image, release

    base = release.Base(image.application_image(interpreter).data)
    return signed_update(keys, folder, interpreter, base=base)


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
