"""uplink.burst_* and uplink.burst_tls_*: 200 config commands, packed as the fleet services send
them (musket.batches: 10 messages), published within a tenth of a second to a device whose
session is up (a real Mosquitto with the configuration musket exports, as `--no-tls` writes
it and with TLS, the whole firmware under MicroPython at the board's heap, 25 virtual
minutes). The figures are those of
`tests/uplink/test_command_burst.py`, which this script runs: the test holds what must be true
(every command answered once, no session lost, no MemoryError, no reply out of the command
record before its PUBACK), and this reports what the burst cost:

- uplink.burst_air_bytes: the modem model's air bytes both ways while the burst is taken
  (TCP/IP included), with _up and _down; the target is under 20,000 bytes (docs/uplink.md,
  Commands, says where the bytes go);
- uplink.burst_ids_answered, uplink.burst_sessions_ended, uplink.burst_heap_peak."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = ROOT / "tests" / "uplink" / "test_command_burst.py"
TARGET_AIR_BYTES = 20_000


def main() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(TEST), "-q", "-s", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True)
    figures = [line for line in done.stdout.splitlines() if line.startswith("FIGURE ")]
    for line in done.stdout.splitlines():
        if "burst of " in line:
            print(line)
    if done.returncode != 0 or not figures:
        raise SystemExit(f"the burst test failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
    for line in figures:
        print(line)
        _, name, value, _unit = line.split(maxsplit=3)
        if name in ("uplink.burst_air_bytes", "uplink.burst_tls_air_bytes"):
            print(f"air bytes of the burst: {int(value):,} (target {TARGET_AIR_BYTES:,})")


if __name__ == "__main__":
    main()
