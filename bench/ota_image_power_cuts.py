"""ota.image_power_cut_*: an image update (the MicroPython firmware into the other OTA app
slot) cut at flash writes of its three steps, on the reference board's OTA layout under each
interpreter: the download (the head to the filesystem, the payload into the slot, a brew
counted after every chunk; a bundle of a few flash blocks, as each cut costs a download
again), the boot that inflates the image in the slot and names it in otadata, and the new
image's first boot, which confirms it. After each cut the
device downloads again from its checkpoint where it was downloading, then boots on until the
update settles and must run a whole, valid image: the new one, confirmed in otadata and in
the boot stage's state, or the previous one, rolled back by the bootloader
(tests/image_updates.py; tests/ota/test_image_power_cuts.py cuts at a spread of these writes).
The image is 150 KB of code that compresses as firmware does: three segments.

- ota.image_power_cut_writes.<interpreter>: flash writes cut at;
- ota.image_power_cut_failures.<interpreter>: cut points after which no whole, valid image
  ran, or the state disagreed with otadata;
- ota.image_power_cut_rollbacks.<interpreter>: cut points that ended rolled back (the cut
  struck the trial's boot before its confirmation reached otadata);
- ota.image_power_cut_wall_seconds.<interpreter>: the sweep's wall time."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the update fixtures the tests use

from checksuite import modules  # noqa: E402
from image_updates import (  # noqa: E402
    DOWNLOAD,
    TRIAL_BOOT_AND_CONFIRM,
    cut_image_download_at,
    image_bundle_for,
    place_payload,
    settle_after_cut,
    split,
    waiting_image_update,
)
from updates import BOARD, STEPS, feeding, trusting, writes_of  # noqa: E402

from musket.espimage import code_like  # noqa: E402
from musket.ota.keys import KeyStore  # noqa: E402
from musket_sim import VirtualDevice  # noqa: E402
from musket_sim.device import INTERPRETERS  # noqa: E402


def sweep(folder: Path, keys: KeyStore, interpreter: str) -> bool:
    folder.mkdir()
    started = time.monotonic()
    problems, cuts = [], 0
    # The download, of a bundle the filesystem can also hold as the feed that serves it.
    small, small_app = image_bundle_for(keys, folder, code=code_like(12 * 1024))
    device = VirtualDevice(BOARD, folder / "download", interpreter=interpreter, ota=True)
    device.create_flash({**trusting(keys), **feeding(small),
                         **modules(interpreter, [STEPS], folder / ".mpy-cache")})
    baseline = device.image.read_bytes()
    writes = writes_of(device, DOWNLOAD, "DOWNLOADED")
    failed = 0
    for cut in range(1, writes + 1):
        problem = cut_image_download_at(device, baseline, cut, small, small_app)
        cuts += 1
        if problem:
            failed += 1
            problems.append(f"download: {problem}")
    print(f"{interpreter}: download ({len(split(small)[1]):,} bytes of payload): cut at each "
          f"of its {writes} flash writes: {failed} failed")
    data, app = image_bundle_for(keys, folder, code=code_like(150 * 1024))
    device = VirtualDevice(BOARD, folder / "device", interpreter=interpreter, ota=True)
    device.create_flash({**waiting_image_update(keys, data),
                         **modules(interpreter, [STEPS], folder / ".mpy-cache")})
    place_payload(device, data)
    start = device.image.read_bytes()
    installing = device.run(60, max_boots=1).flash_writes
    on_trial = device.image.read_bytes()
    confirming = device.run(60, script=TRIAL_BOOT_AND_CONFIRM, max_boots=1).flash_writes
    rollbacks = 0
    for name, baseline, writes, script in (
            ("install, set_boot", start, installing, None),
            ("trial boot, confirmation", on_trial, confirming, TRIAL_BOOT_AND_CONFIRM)):
        failed = 0
        for cut in range(1, writes + 1):
            device.image.write_bytes(baseline)
            outcome, problem = settle_after_cut(device, cut, script, app)
            cuts += 1
            if problem:
                failed += 1
                problems.append(f"{name}: cut at write {cut}: {problem}")
            rollbacks += outcome == "rolled_back"
        print(f"{interpreter}: {name}: cut at each of its {writes} flash writes: "
              f"{failed} failed")
    wall = time.monotonic() - started
    for problem in problems[:10]:
        print(problem)
    print(f"FIGURE ota.image_power_cut_writes.{interpreter} {cuts} writes")
    print(f"FIGURE ota.image_power_cut_failures.{interpreter} {len(problems)} count")
    print(f"FIGURE ota.image_power_cut_rollbacks.{interpreter} {rollbacks} count")
    print(f"FIGURE ota.image_power_cut_wall_seconds.{interpreter} {wall:.1f} seconds")
    return not problems


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        keys = KeyStore(Path(tmp, "keys"))
        keys.generate()
        ok = [sweep(Path(tmp, name), keys, name) for name in INTERPRETERS]
    if not all(ok):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
