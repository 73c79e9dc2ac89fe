"""The device's check of an update's signature (app.ota.ed25519) under the MicroPython unix port,
at the reference board's heap, on a 2 KB message signed here with the `cryptography` package.

- ota.verify_ms: the median wall time of one verify (SHA-512 of the message included) over
  RUNS runs, timed on the device side with time.ticks_us. The unix port on this machine, not
  an ESP32: a 240 MHz Xtensa running the same bytecode takes many times longer.
- ota.verify_heap_bytes: the least free heap (gc.mem_free() right before the call) in which a
  verify completes, found by cutting the free heap down with ballast and searching
  (bench/_ota_verify_mp.py says how): the verify's peak of live heap, fragmentation included.
  The unix port is 64-bit, so pointers and object headers are twice the ESP32's size.

The firmware and the device-side module are compiled with mpy-cross, as the firmware ships.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from musket.boards import load_board
from musket.firmware import compile_mpy, firmware_dir
from musket_sim.device import micropython_binary

BOARD = "esp32-sim7080g"
MESSAGE_BYTES = 2048
RUNS = 5
DEVICE_SIDE = Path(__file__).resolve().parent / "_ota_verify_mp.py"
MODULES = ("app/__init__.py", "app/ota/__init__.py", "app/ota/sha512.py", "app/ota/ed25519.py")


def write_case(path: Path) -> None:
    rng = random.Random(2048)
    key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    message = rng.randbytes(MESSAGE_BYTES)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    path.write_bytes(public + key.sign(message) + message)


def build(folder: Path) -> None:
    """The modules a verify needs, as .mpy under `folder` (the device's import root)."""
    cache = folder / ".mpy-cache"
    for device_path in MODULES:
        target = folder / device_path.replace(".py", ".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(compile_mpy(firmware_dir() / device_path, device_path, cache))
    (folder / "_ota_verify_mp.mpy").write_bytes(
        compile_mpy(DEVICE_SIDE, DEVICE_SIDE.name, cache))


def main() -> None:
    heap = load_board(BOARD).heap
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(folder / "lib")
        write_case(folder / "case.bin")
        # sys.path empty but for the build: the firmware imports nothing else.
        env = dict(os.environ, MICROPYPATH=str(folder / "lib"))
        proc = subprocess.run(
            [micropython_binary(), "-X", f"heapsize={heap}", "-c",
             f"import _ota_verify_mp\n_ota_verify_mp.main({RUNS})\n"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"the device side failed ({proc.returncode}):\n"
                         f"{proc.stdout}{proc.stderr}")
    found = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    times_us = [int(t) for t in found["TIMES"].split()]
    print(f"{RUNS} verifies of a {MESSAGE_BYTES}-byte message at a {heap}-byte heap: "
          f"{', '.join('%.1f' % (t / 1000) for t in times_us)} ms")
    print(f"FIGURE ota.verify_ms {statistics.median(times_us) / 1000:.1f} ms")
    print(f"FIGURE ota.verify_heap_bytes {int(found['NEEDS'])} bytes")


if __name__ == "__main__":
    main()
