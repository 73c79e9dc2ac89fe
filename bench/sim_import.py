"""registry.import_50mb_*: `musket registry import-sims` of a 50 MB vendor SIM list (1.2 million
rows, every ICCID valid) into a fresh SQLite registry, run as its own process.

- registry.import_50mb_peak_rss_mb: the import process's peak resident memory (its own
  rusage, from wait4), interpreter and libraries included. The import reads the file a row
  at a time and stages rows in a temporary table, so this does not grow with the file.
- registry.import_50mb_seconds: the import's wall time, interpreter start-up included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from musket.identity import luhn_check_digit

ROWS = 1_200_000  # 43 bytes a row: 51.6 MB
IMPORT = "from musket.cli import main; main(prog_name='musket')"


def write_sim_list(path: Path, rows: int) -> None:
    """A vendor's list of `rows` SIMs: 19-digit ICCIDs 89490... with their check digit, one
    in ten suspended."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("ICCID,plan,state\n")
        for n in range(rows):
            body = f"89490{n:013d}"
            state = "suspended" if n % 10 == 9 else "inventory"
            f.write(f"{body}{luhn_check_digit(body)},iot-eu-100mb,{state}\n")


def run_import(csv_path: Path, registry: Path) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in MB, stderr) of `musket registry import-sims` in
    a process of its own: the RSS is that process's alone (wait4 on its pid)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", IMPORT, "registry", "import-sims",
                              str(csv_path), "--registry", str(registry)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None  # stderr=PIPE
    stderr = child.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stderr.close()
    return child.returncode, seconds, usage.ru_maxrss / 1024, stderr  # ru_maxrss: KiB (Linux)


def migrate(registry: Path) -> None:
    subprocess.run([sys.executable, "-c", IMPORT, "registry", "migrate", "--registry",
                    str(registry)], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, registry = Path(tmp) / "sims.csv", Path(tmp) / "registry.sqlite"
        write_sim_list(csv_path, ROWS)
        size_mb = csv_path.stat().st_size / 1e6
        migrate(registry)
        code, seconds, rss_mb, stderr = run_import(csv_path, registry)
        if code != 0:
            raise SystemExit(f"import-sims failed ({code}): {stderr}")
        print(f"{ROWS} SIMs, {size_mb:.1f} MB: imported in {seconds:.1f} s, "
              f"peak RSS {rss_mb:.0f} MB")
        print(f"FIGURE registry.import_50mb_peak_rss_mb {rss_mb:.1f} MB")
        print(f"FIGURE registry.import_50mb_seconds {seconds:.2f} s")


if __name__ == "__main__":
    main()
