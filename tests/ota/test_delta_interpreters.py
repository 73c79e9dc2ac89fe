"""The device's delta applier (firmware/app/ota/delta.py) under real MicroPython and under
CPython, on deltas the host made (musket.ota.delta): checks/delta_checks.py, one item per check
per interpreter. The fixtures are written into the run's scratch folder first; under CPython
the sim's stand-in for MicroPython's `deflate` inflates them."""

import hashlib
import json
import random
from pathlib import Path

from checksuite import Suite, run_bare, script
from mutations import edited

from musket.ota import bundle, delta, image

CHECKS = Path(__file__).resolve().parent / "checks"
MODULE = CHECKS / "delta_checks.py"
HEAP = "111936"  # the ESP32 port's heap without PSRAM (boards/*.toml)


def fixtures(folder: Path) -> None:
    rng = random.Random(7)
    app = image.application_image("micropython").data
    text = bytes(rng.choice(b"abcdefgh ijklmnop\n") for _ in range(30000))
    heap_base = (app + text + rng.randbytes(40000))[:110000]
    pairs = {
        "random": (text, edited(text, rng, 30)),
        "image": (app, edited(app, rng, 5)),
        "same": (app, app),
        "empty": (b"", rng.randbytes(5000)),
        "heap": (heap_base, edited(heap_base, rng, 20)),
    }
    folder.mkdir()
    for name, (base, new) in pairs.items():
        ops = delta.make_delta(base, new)
        (folder / (name + ".base")).write_bytes(base)
        (folder / (name + ".ops")).write_bytes(ops)
        (folder / (name + ".delta")).write_bytes(bundle.compress(ops))
        (folder / (name + ".json")).write_text(json.dumps(
            {"size": len(new), "sha256": hashlib.sha256(new).hexdigest(),
             "base_size": len(base)}))


def _run(interpreter, scratch):
    fixtures(scratch / "fixtures")
    return run_bare(interpreter, [MODULE], script(MODULE), scratch, HEAP)


SUITE = Suite(MODULE, _run)

test_delta, test_delta_run_is_clean = SUITE.tests()
