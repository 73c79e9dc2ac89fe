"""ota.image_power_cut_*: an image update (the MicroPython firmware into the other OTA app
slot) cut at every flash write of its two boots, on the reference board's OTA layout under
each interpreter: the boot that installs the image and names it in otadata, and the new
image's first boot, which confirms it. After each cut the device boots on until the update
settles and must run a whole, valid image: the new one, confirmed in otadata and in the boot
stage's state, or the previous one, rolled back by the bootloader (tests/image_updates.py
`settle_after_cut`; tests/ota/test_image_power_cuts.py cuts at a spread of these writes).

- ota.image_power_cut_writes.<interpreter>: flash writes of the two boots, each a cut point;
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
    TRIAL_BOOT_AND_CONFIRM,
    image_bundle_for,
    settle_after_cut,
)
from updates import BOARD, STEPS, waiting_update  # noqa: E402

from musket.ota.keys import KeyStore  # noqa: E402
from musket_sim import VirtualDevice  # noqa: E402
from musket_sim.device import INTERPRETERS  # noqa: E402


def sweep(folder: Path, keys: KeyStore, interpreter: str) -> bool:
    folder.mkdir()
    data, app = image_bundle_for(keys, folder)
    device = VirtualDevice(BOARD, folder / "device", interpreter=interpreter, ota=True)
    device.create_flash({**waiting_update(keys, data),
                         **modules(interpreter, [STEPS], folder / ".mpy-cache")})
    start = device.image.read_bytes()
    installing = device.run(60, max_boots=1).flash_writes
    on_trial = device.image.read_bytes()
    confirming = device.run(60, script=TRIAL_BOOT_AND_CONFIRM, max_boots=1).flash_writes
    started = time.monotonic()
    problems, rollbacks = [], 0
    for name, baseline, writes, script in (
            ("install, set_boot", start, installing, None),
            ("trial boot, confirmation", on_trial, confirming, TRIAL_BOOT_AND_CONFIRM)):
        failed = 0
        for cut in range(1, writes + 1):
            device.image.write_bytes(baseline)
            outcome, problem = settle_after_cut(device, cut, script, app)
            if problem:
                failed += 1
                problems.append(f"{name}: cut at write {cut}: {problem}")
            rollbacks += outcome == "rolled_back"
        print(f"{interpreter}: {name}: cut at each of its {writes} flash writes: "
              f"{failed} failed")
    wall = time.monotonic() - started
    for problem in problems[:10]:
        print(problem)
    print(f"FIGURE ota.image_power_cut_writes.{interpreter} {installing + confirming} writes")
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
