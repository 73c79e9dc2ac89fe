"""demo.seconds: the wall time of `musket demo`, the whole product's life on six units
(factory, a field day, service, two staged updates, report), as a newcomer runs it with
`make demo`.

Runs the command itself (a process of its own, as `make demo` does) in a temporary work
folder; a run whose report has a failed check is not a figure, and the script fails.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

MUSKET = Path(sys.executable).with_name("musket")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="musket-bench-demo-") as tmp:
        start = time.monotonic()
        run = subprocess.run([str(MUSKET), "demo", "--workdir", tmp], capture_output=True,
                             text=True)
        seconds = time.monotonic() - start
    last = run.stdout.strip().splitlines()[-1:] or ["(no output)"]
    print(f"musket demo: {last[0]}")
    if run.returncode != 0:
        print(run.stdout[-2000:] + run.stderr[-2000:])
        raise SystemExit(f"musket demo failed with exit code {run.returncode}")
    print(f"FIGURE demo.seconds {seconds:.1f} s")


if __name__ == "__main__":
    main()
