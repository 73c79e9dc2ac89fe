"""ota.power_cut_*: an update cut at every flash write it makes, step by step, on the reference
board under each interpreter (MicroPython at the board's heap): the download of a delta bundle
(the offer, each chunk appended, the bundle's completion; the device commits a brew after each
chunk), the install of that delta (the patching) and of a full bundle (the staging), each with
the swap and the trial's first boot, and the confirmation (a brew committed before and after
it). After each cut the device boots on, finishes the update and must end on the whole new
image, with every brew it committed (tests/updates.py `cut_download_at`, `cut_update_at`,
`cut_confirmation_at`; the tests cut at a spread of these writes).

- ota.power_cut_writes.<interpreter>: flash writes of the update's steps, each one a cut
  point;
- ota.power_cut_failures.<interpreter>: cut points after which the device did not end on the
  new image with its counts;
- ota.power_cut_wall_seconds.<interpreter>: the sweep's wall time."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the update fixtures the tests use

from checksuite import modules  # noqa: E402
from updates import (  # noqa: E402
    BOARD,
    CONFIRM,
    DOWNLOAD,
    STEPS,
    cut_confirmation_at,
    cut_download_at,
    cut_update_at,
    delta_update,
    feeding,
    signed_update,
    trusting,
    waiting_update,
    writes_of,
    writes_of_update,
)

from musket.ota import bundle, image  # noqa: E402
from musket.ota.keys import KeyStore  # noqa: E402
from musket_sim import VirtualDevice  # noqa: E402
from musket_sim.device import INTERPRETERS  # noqa: E402

WORKERS = 2
CUTTERS = {"download": cut_download_at, "install": cut_update_at,
           "confirmation": cut_confirmation_at}


def _stop_worker(signum: int, frame: object) -> None:
    raise SystemExit(1)  # unwinds the running device, which kills its interpreter


def _worker_signals() -> None:
    # Ctrl-C is the parent's to handle: a worker that took it would count the device it
    # stopped as "interrupted" and go on to its next cut. The parent stops the pool with
    # SIGTERM (Pool.terminate) instead, and a worker leaves as the device's host would.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)


def _sweep(args: tuple) -> list[str]:
    interpreter, folder, baseline, cutter, extra, cuts = args
    device = VirtualDevice(BOARD, folder, interpreter=interpreter)
    device.image.write_bytes(baseline)
    cut = CUTTERS[cutter]
    return [p for p in (cut(device, baseline, at, *extra) for at in cuts) if p]


def _every_write(interpreter: str, folder: Path, baseline: bytes, writes: int, cutter: str,
                 extra: tuple) -> list[str]:
    shares = [(interpreter, folder / f"sweep-{i}", baseline, cutter, extra,
               list(range(1 + i, writes + 1, WORKERS))) for i in range(WORKERS)]
    # Leaving the block, interrupted or not, terminates the workers and their devices.
    with Pool(WORKERS, initializer=_worker_signals) as pool:
        return [p for found in pool.map(_sweep, shares) for p in found]


def sweep(folder: Path, keys: KeyStore, interpreter: str) -> bool:
    full = signed_update(keys, folder / "full", interpreter)
    delta = delta_update(keys, folder / "delta", interpreter)
    new_image = bundle.read_bundle(full, keys.public_keys()).image()
    old_image = image.application_image(interpreter).data
    steps_module = modules(interpreter, [STEPS], folder / ".mpy-cache")

    def device(name: str, files: dict[str, bytes]) -> VirtualDevice:
        made = VirtualDevice(BOARD, folder / name, interpreter=interpreter)
        made.create_flash({**files, **steps_module})
        return made

    fetching = device("download", {**trusting(keys), **feeding(delta)})
    patching = device("delta", waiting_update(keys, delta))
    staging = device("full", waiting_update(keys, full))
    confirming = device("confirm", waiting_update(keys, delta))
    confirming.run(60)  # installed, swapped, on trial
    steps = [  # name, device, its writes, cutter, what the cutter takes beyond the cut
        ("download", fetching, writes_of(fetching, DOWNLOAD, "DOWNLOADED"), "download",
         (delta, old_image, new_image)),
        ("delta install, swap, first boot", patching, writes_of_update(patching), "install",
         (new_image, 0)),
        ("full install, swap, first boot", staging, writes_of_update(staging), "install",
         (new_image, 0)),
        ("confirmation", confirming, writes_of(confirming, CONFIRM, "CONFIRMED"),
         "confirmation", (new_image,)),
    ]
    started = time.monotonic()
    problems = []
    for name, dev, writes, cutter, extra in steps:
        found = _every_write(interpreter, folder / f"cuts-{cutter}-{writes}",
                             dev.image.read_bytes(), writes, cutter, extra)
        print(f"{interpreter}: {name}: cut at each of its {writes} flash writes: "
              f"{len(found)} failed")
        problems += found
    wall = time.monotonic() - started
    for problem in problems[:10]:
        print(problem)
    total = sum(step[2] for step in steps)
    print(f"FIGURE ota.power_cut_writes.{interpreter} {total} writes")
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
