"""week.*: a week in the chip's heap. One device runs the whole firmware (the board's sensor
models on the "day" usage scenario, the modem model's good network) for 7 virtual days under
MicroPython at the board's heap, with the uplink over TLS to a real Mosquitto on loopback (a
test CA made for the run), as `musket sim run --for 7d` would with a TLS broker to talk to.

The figures come from the heartbeat's status line in the console log
(`I status: up ..., heap free F, largest free L, ...`, hourly):

- week.largest_free_day1: the least largest free block over the heartbeats of the first day
  after the first hour (from 1 h to 25 h), once boot and the first sessions have settled;
- week.largest_free_day7: the same over the last 24 h. Less than day 1: the heap fragments;
- week.heap_free_min: the least heap free at any heartbeat;
- week.memory_errors: lines of the console log that carry "MemoryError" or "memory allocation
  failed" (an allocation the heap could not give);
- week.wall_seconds: the run's wall time."""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "uplink"))  # the broker runner and device files

from conftest import DEVICES, SERVICE_PASSWORD, SERVICE_USER, Mosquitto, device_files  # noqa: E402
from test_tls import make_test_pki  # noqa: E402

from musket.boards import load_board  # noqa: E402
from musket_sim import VirtualDevice  # noqa: E402
from musket_sim.scenario import load_scenario  # noqa: E402
from musket_sim.usage import load_usage  # noqa: E402

BOARD = "esp32-sim7080g"
HOUR_S = 3600
DAY_S = 24 * HOUR_S
WEEK_S = 7 * DAY_S
STATUS = re.compile(r"^\[\s*(\d+\.\d+)\] I status: up \d+s, heap free (\d+), "
                    r"largest free (\d+),")
MEMORY_ERRORS = ("MemoryError", "memory allocation failed")
TAIL_LINES = 30  # of the console log, shown when the device did not last the week


def heartbeats(log: str) -> list[tuple[float, int, int]]:
    """(virtual seconds, heap free, largest free) of each status line, in order."""
    return [(float(m[1]), int(m[2]), int(m[3]))
            for m in map(STATUS.match, log.splitlines()) if m]


def run_week(workdir: Path, port: int, ca_pem: bytes):
    """The whole firmware for a week against the TLS broker on `port`. -> (result, log)."""
    device = VirtualDevice(BOARD, workdir / "device", interpreter="micropython",
                           modem=load_scenario("good"), usage=load_usage("day"))
    files = device_files("dev-a", port, mqtt_tls=1)
    files["ca.pem"] = ca_pem
    device.create_flash(files)
    try:
        result = device.run(WEEK_S)
    finally:
        device.close()
    return result, device.console_log.read_text()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        creds = dict(DEVICES)
        creds[SERVICE_USER] = SERVICE_PASSWORD
        pki = make_test_pki(Path(tmp) / "pki")
        broker = Mosquitto(Path(tmp) / "broker", creds, extra=pki.mosquitto_lines())
        started = time.monotonic()
        try:
            result, log = run_week(Path(tmp), broker.port, pki.ca.read_bytes())
        finally:
            broker.stop()
        wall = time.monotonic() - started
    beats = heartbeats(log)
    end = result.virtual_seconds
    day1 = [largest for t, _, largest in beats if HOUR_S <= t <= HOUR_S + DAY_S]
    day7 = [largest for t, _, largest in beats if t > end - DAY_S]
    memory_errors = sum(1 for line in log.splitlines()
                        if any(e in line for e in MEMORY_ERRORS))
    print(f"{BOARD} at {load_board(BOARD).heap} bytes of heap, uplink over TLS: "
          f"{end / DAY_S:.2f} virtual days, {len(result.boot_log)} boot(s), "
          f"{len(beats)} heartbeats, exit {result.exit_reason}, {wall:.0f} wall seconds")
    print(f"uplink: {log.count(' I uplink: connected ')} sessions connected, "
          f"{log.count(' W uplink: session ended: ')} ended")
    if result.errors or end < WEEK_S or not day1 or not day7:
        print(f"the device did not last the week: errors {result.errors}")
        print("console log, last lines:")
        for line in log.splitlines()[-TAIL_LINES:]:
            print("  " + line)
    if day1:
        print(f"FIGURE week.largest_free_day1 {min(day1)} bytes")
    if day7:
        print(f"FIGURE week.largest_free_day7 {min(day7)} bytes")
    if beats:
        print(f"FIGURE week.heap_free_min {min(free for _, free, _ in beats)} bytes")
    print(f"FIGURE week.memory_errors {memory_errors} count")
    print(f"FIGURE week.wall_seconds {wall:.1f} seconds")
    if result.errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
