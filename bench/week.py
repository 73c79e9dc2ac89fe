"""week.*: a week in the chip's heap, as a team would run it. A reference board is provisioned
on the bench with TLS (`musket sim run --console`, then `musket provision --ca` against a
registry), its broker is configured from the registry (`musket registry export-broker --conf`,
a test CA and broker certificate made for the run) and started (a real Mosquitto on loopback),
and the unit then lives `musket sim run --keep-flash --for 7d`: the whole firmware (the board's
sensor models on the "day" usage scenario, the modem model's good network, the uplink over TLS)
under MicroPython at the board's heap.

The figures come from the heartbeat's status line in the console log
(`I status: up ..., heap free F, largest free L, ...`, hourly):

- week.exit_code: `musket sim run`'s exit code (0: a clean run; 3: the device reported errors);
- week.largest_free_day1: the least largest free block over the heartbeats of the first day
  after the first hour (from 1 h to 25 h), once boot and the first sessions have settled;
- week.largest_free_day7: the same over the last 24 h. Less than day 1: the heap fragments;
- week.largest_free_median_day1, week.largest_free_median_day7: the median of the same
  heartbeats, the block the heap typically has;
- week.heap_free_min: the least heap free at any heartbeat;
- week.memory_errors: lines of the console log that carry "MemoryError" or "memory allocation
  failed" (an allocation the heap could not give);
- week.sessions: uplink sessions connected in the week;
- week.wall_seconds: the week's run's wall time."""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "uplink"))  # the test CA and broker certificate
sys.path.insert(1, str(ROOT / "tests"))  # checksuite, which the uplink tests' modules import

from conftest import _free_port  # noqa: E402
from test_tls import make_test_pki  # noqa: E402

from musket import system  # noqa: E402
from musket.boards import load_board  # noqa: E402

BOARD = "esp32-sim7080g"
MUSKET = str(Path(sys.executable).with_name("musket"))
HOUR_S = 3600
DAY_S = 24 * HOUR_S
WEEK_S = 7 * DAY_S
BENCH_SPEED = 50  # virtual seconds per wall second while the unit waits on the bench
STATUS = re.compile(r"^\[\s*(\d+\.\d+)\] I status: up \d+s, heap free (\d+), "
                    r"largest free (\d+),")
MEMORY_ERRORS = ("MemoryError", "memory allocation failed")
TAIL_LINES = 30  # of the console log, shown when the device did not last the week


def heartbeats(log: str) -> list[tuple[float, int, int]]:
    """(virtual seconds, heap free, largest free) of each status line, in order."""
    return [(float(m[1]), int(m[2]), int(m[3]))
            for m in map(STATUS.match, log.splitlines()) if m]


def musket(*args: str) -> str:
    """Runs one musket command; its output, or the bench stops with it."""
    done = subprocess.run([MUSKET, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"musket {' '.join(args)} exited {done.returncode}:\n"
                         f"{done.stdout}{done.stderr}")
    return done.stdout


def provision_on_bench(workdir: Path, registry: Path, port: int, ca: Path) -> str:
    """The unit on the bench with its console on a pty, provisioned for TLS. -> device ID."""
    out = workdir.parent / "bench-stdout.txt"
    with open(out, "wb") as f:
        unit = subprocess.Popen(
            [MUSKET, "sim", "run", "--console", "--for", "30d", "--speed", str(BENCH_SPEED),
             "--board", BOARD, "--workdir", str(workdir), "--fresh"],
            stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not out.read_text(errors="replace").endswith("\n"):
            if unit.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the unit did not come up on the bench:\n{out.read_text()}")
            time.sleep(0.05)
        console = out.read_text().splitlines()[0].removeprefix("console: ").strip()
        result = json.loads(musket(
            "provision", "--port", console, "--registry", str(registry),
            "--station", "bench", "--operator", "week", "--broker-host", "127.0.0.1",
            "--broker-port", str(port), "--ca", str(ca), "--allow-unknown-sim", "--json"))
    finally:
        os.killpg(unit.pid, signal.SIGTERM)
        unit.wait(30)
    return result["device_id"]


def start_broker(folder: Path, registry: Path, port: int, pki) -> subprocess.Popen:
    """Mosquitto with the configuration the registry exports, on loopback."""
    folder.mkdir()
    conf = folder / "mosquitto.conf"
    musket("registry", "export-broker", "--registry", str(registry),
           "--passwd", str(folder / "passwd"), "--acl", str(folder / "acl"), "--conf", str(conf),
           "--certfile", str(pki.cert), "--keyfile", str(pki.key), "--port", str(port),
           "--address", "127.0.0.1")
    # This run keeps the broker's state and log in its folder; started as root, Mosquitto
    # would switch to its own user and lose the files. No Nagle delay (bench/uplink.py says
    # why).
    text = re.sub(r"(?m)^persistence_location .*$", f"persistence_location {folder}/",
                  conf.read_text())
    conf.write_text(text + f"log_dest file {folder / 'mosquitto.log'}\n"
                    f"user {getpass.getuser()}\nset_tcp_nodelay true\n")
    broker = subprocess.Popen([str(system.require("mosquitto")), "-c", str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    if broker.poll() is not None:
        assert broker.stderr is not None  # stderr=PIPE
        raise SystemExit("mosquitto did not start: " + broker.stderr.read().decode())
    return broker


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pki = make_test_pki(folder / "pki")
        registry = folder / "registry.sqlite"
        unit = folder / "unit"
        port = _free_port()
        musket("registry", "migrate", "--registry", str(registry))
        device_id = provision_on_bench(unit, registry, port, pki.ca)
        broker = start_broker(folder / "broker", registry, port, pki)
        log_start = (unit / "console.log").stat().st_size
        started = time.monotonic()
        try:
            done = subprocess.run(
                [MUSKET, "sim", "run", "--keep-flash", "--workdir", str(unit), "--board", BOARD,
                 "--for", "7d", "--json"], capture_output=True, text=True)
        finally:
            broker.terminate()
            broker.wait(10)
        wall = time.monotonic() - started
        log = (unit / "console.log").read_bytes()[log_start:].decode(errors="replace")
    try:
        summary = json.loads(done.stdout)
    except ValueError:
        raise SystemExit(f"musket sim run exited {done.returncode}:\n{done.stdout}"
                         f"{done.stderr}") from None
    beats = heartbeats(log)
    end = summary["virtual_seconds"]
    day1 = [largest for t, _, largest in beats if HOUR_S <= t <= HOUR_S + DAY_S]
    day7 = [largest for t, _, largest in beats if t > end - DAY_S]
    memory_errors = sum(1 for line in log.splitlines()
                        if any(e in line for e in MEMORY_ERRORS))
    sessions = log.count(" I uplink: connected ")
    print(f"{device_id} on {BOARD} at {load_board(BOARD).heap} bytes of heap, provisioned for "
          f"TLS: musket sim run --for 7d exited {done.returncode} ({summary['exit_reason']}), "
          f"{end / DAY_S:.2f} virtual days, {summary['boots']} boot(s), {len(beats)} "
          f"heartbeats, {wall:.0f} wall seconds")
    print(f"uplink: {sessions} sessions connected, "
          f"{log.count(' W uplink: session ended: ')} ended")
    if summary["errors"] or end < WEEK_S or not day1 or not day7:
        print(f"the device did not last the week: errors {summary['errors']}")
        print("console log, last lines:")
        for line in log.splitlines()[-TAIL_LINES:]:
            print("  " + line)
    print(f"FIGURE week.exit_code {done.returncode} code")
    if day1:
        print(f"FIGURE week.largest_free_day1 {min(day1)} bytes")
        print(f"FIGURE week.largest_free_median_day1 {statistics.median(day1):.0f} bytes")
    if day7:
        print(f"FIGURE week.largest_free_day7 {min(day7)} bytes")
        print(f"FIGURE week.largest_free_median_day7 {statistics.median(day7):.0f} bytes")
    if beats:
        print(f"FIGURE week.heap_free_min {min(free for _, free, _ in beats)} bytes")
    print(f"FIGURE week.memory_errors {memory_errors} count")
    print(f"FIGURE week.sessions {sessions} connects")
    print(f"FIGURE week.wall_seconds {wall:.1f} seconds")
    if done.returncode != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
