"""Update bundle sizes: the full bundle of firmware/ against a delta bundle for a one-line
change in one module (a log message in app/usage.py), both for MicroPython, signed by a
throwaway key. The ratio that counts is what a device downloads for a small fix: the delta
bundle's bytes over the full bundle's (target: at most 0.03).
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

from musket import firmware
from musket.ota import release
from musket.ota.keys import KeyStore

BOARD = "esp32-sim7080g"
MODULE = Path("app", "usage.py")
OLD, NEW = "commit failed, will retry", "commit failed; retrying"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = KeyStore(Path(tmp, "keys"))
        store.generate()
        changed = Path(tmp, "firmware")
        shutil.copytree(firmware.firmware_dir(), changed,
                        ignore=shutil.ignore_patterns("__pycache__"))
        source = changed / MODULE
        text = source.read_text()
        if OLD not in text:
            sys.exit(f"{MODULE} no longer says {OLD!r}: pick another line to change")
        source.write_text(text.replace(OLD, NEW, 1))
        full = release.build_release(store, version="1.0.0", boards=[BOARD])
        base_file = Path(tmp, "app-1.0.0.mkot")
        base_file.write_bytes(full.data)
        start = time.perf_counter()
        small = release.build_release(  # as `musket ota build --base app-1.0.0.mkot` does
            store, version="1.0.1", boards=[BOARD], firmware_root=changed,
            base=release.load_base(base_file, store))
        seconds = time.perf_counter() - start
    m = small.manifest
    manifest = m["total_size"] - 80 - m["payload"]["size"]
    print(f"image {m['image']['size']:,} bytes; delta payload {m['payload']['size']:,} bytes, "
          f"manifest {manifest:,} bytes ({len(m['files'])} files listed); "
          f"delta bundle built in {seconds:.2f} s")
    print("FIGURE ota.full_bundle_bytes %d bytes" % full.manifest["total_size"])
    print("FIGURE ota.delta_bundle_bytes %d bytes" % m["total_size"])
    print("FIGURE ota.delta_payload_bytes %d bytes" % m["payload"]["size"])
    print("FIGURE ota.delta_bundle_ratio %.4f ratio"
          % (m["total_size"] / full.manifest["total_size"]))
    print("FIGURE ota.delta_payload_ratio %.4f ratio"
          % (m["payload"]["size"] / full.manifest["payload"]["size"]))


if __name__ == "__main__":
    main()
