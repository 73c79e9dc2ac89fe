"""ota.power_cut_*: an update cut at every flash write it makes (the install into the spare
partition, the swap, the trial's first boot), on the reference board under each interpreter
(MicroPython at the board's heap): after each cut the device boots on and must end on the
whole new image, on trial, with no boot failing (tests/updates.py `cut_update_at`; the tests
cut at a spread of these writes).

- ota.power_cut_writes.<interpreter>: flash writes of one update, each one a cut point;
- ota.power_cut_failures.<interpreter>: cut points after which the device did not end on the
  new image;
- ota.power_cut_wall_seconds.<interpreter>: the sweep's wall time."""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the update fixtures the tests use

from updates import (  # noqa: E402
    BOARD,
    cut_update_at,
    marked_firmware,
    waiting_update,
    writes_of_update,
)

from musket.ota import bundle, release  # noqa: E402
from musket.ota.keys import KeyStore  # noqa: E402
from musket_sim import VirtualDevice  # noqa: E402
from musket_sim.device import INTERPRETERS  # noqa: E402

WORKERS = 2


def _sweep(args: tuple[str, Path, bytes, bytes, list[int]]) -> list[str]:
    interpreter, folder, baseline, new_image, cuts = args
    device = VirtualDevice(BOARD, folder, interpreter=interpreter)
    device.image.write_bytes(baseline)
    return [p for p in (cut_update_at(device, baseline, cut, new_image) for cut in cuts) if p]


def sweep(folder: Path, keys: KeyStore, interpreter: str) -> bool:
    made = release.build_release(keys, version="1.1.0", boards=[BOARD], interpreter=interpreter,
                                 firmware_root=marked_firmware(folder / "new"))
    new_image = bundle.read_bundle(made.data, keys.public_keys()).image()
    device = VirtualDevice(BOARD, folder / "device", interpreter=interpreter)
    device.create_flash(waiting_update(keys, made.data))
    baseline = device.image.read_bytes()
    writes = writes_of_update(device)
    started = time.monotonic()
    shares = [(interpreter, folder / f"sweep-{i}", baseline, new_image,
               list(range(1 + i, writes + 1, WORKERS))) for i in range(WORKERS)]
    with ProcessPoolExecutor(WORKERS) as pool:
        problems = [p for found in pool.map(_sweep, shares) for p in found]
    wall = time.monotonic() - started
    for problem in problems[:10]:
        print(problem)
    print(f"{interpreter}: an update of a {len(new_image):,}-byte image cut at each of its "
          f"{writes} flash writes: {len(problems)} failed")
    print(f"FIGURE ota.power_cut_writes.{interpreter} {writes} writes")
    print(f"FIGURE ota.power_cut_failures.{interpreter} {len(problems)} count")
    print(f"FIGURE ota.power_cut_wall_seconds.{interpreter} {wall:.1f} seconds")
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
