"""console.status_seconds: wall time of `musket console --port P status --json` against a
virtual device (real MicroPython, the reference board) whose console runs at 115200 baud, at
speed 1 (virtual time as wall time), the command's own start-up included: the median of
RUNS. Target: at most 1 s.

factory.eol_seconds: the end-of-line test of one unit (`musket factory verify`, library call)
from opening its console to the result in the registry: waiting for the unit to be online, its
selftest through the console, then its first message of this boot acknowledged by a real
Mosquitto, watched as a service user (musket.eol says which messages count). The unit is
provisioned first (plain MQTT to the broker on loopback; its credentials in the broker's
password file as `musket registry export-broker` writes them), at speed 1.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "console"))  # virtual units on the bench

from console_units import (  # noqa: E402
    ACTOR,
    ICCIDS,
    MUSKET,
    VirtualUnit,
    make_registry,
    provision_in_service,
    service_watch,
    start_broker,
)

RUNS = 5


def status_seconds(work: Path) -> float:
    unit = VirtualUnit(work / "status", speed=1)
    try:
        unit.start()
        unit.wait_ready()
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            out = subprocess.run([MUSKET, "console", "--port", unit.port, "status", "--json"],
                                 capture_output=True, text=True, timeout=60)
            times.append(time.perf_counter() - start)
            if out.returncode != 0 or "identity" not in json.loads(out.stdout):
                raise SystemExit(f"status failed: {out.stderr}")
        return statistics.median(times)
    finally:
        unit.stop()


def eol_seconds(work: Path) -> float:
    from musket.eol import verify
    from musket.registry import Registry

    registry_file = make_registry(work)
    mosquitto = start_broker(work / "broker")
    unit = VirtualUnit(work / "eol", scenario={"iccid": ICCIDS[0]}, speed=1)
    try:
        provision_in_service(unit, registry_file, mosquitto)
        unit.wait_ready()
        with Registry.open(registry_file) as registry:
            start = time.perf_counter()
            result = verify(unit.port, registry, ACTOR, service_watch(mosquitto))
            seconds = time.perf_counter() - start
        if not result.passed:
            raise SystemExit(f"the unit failed its end-of-line test: {result.codes} "
                             f"{result.measurements}\nbroker log:\n{mosquitto.log()[-1500:]}")
        return seconds
    finally:
        unit.stop()
        mosquitto.stop()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="musket-bench-console-") as tmp:
        work = Path(tmp)
        print(f"FIGURE console.status_seconds {status_seconds(work):.3f} s", flush=True)
        print(f"FIGURE factory.eol_seconds {eol_seconds(work):.3f} s", flush=True)


if __name__ == "__main__":
    main()
