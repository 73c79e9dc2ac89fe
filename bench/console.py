"""console.status_seconds: wall time of `musket console --port P status --json` against a
virtual device (real MicroPython, the reference board) whose console runs at 115200 baud, at
speed 1 (virtual time as wall time), the command's own start-up included: the median of
RUNS. Target: at most 1 s.

factory.eol_seconds: the end-of-line test of one unit (`musket factory verify`, library call)
from opening its console to the result in the registry: its selftest through the console, then
its first telemetry acknowledged by a real Mosquitto, watched as a service user. The unit is
provisioned first (plain MQTT to the broker on loopback; its credentials in the broker's
password file as `musket registry export-broker` writes them), at speed 1. On the line the
jig runs the appliance: the first brew's counter event is the unit's first telemetry (it goes
at once; readings alone wait for their batch).
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
    BUSY_USAGE,
    ICCIDS,
    MUSKET,
    VirtualUnit,
    uplink_fixtures,
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
    fixtures = uplink_fixtures()
    Mosquitto = fixtures.Mosquitto
    SERVICE_USER, SERVICE_PASSWORD = fixtures.SERVICE_USER, fixtures.SERVICE_PASSWORD
    from musket import broker
    from musket.eol import BrokerWatch, verify
    from musket.provision import BrokerSettings, provision
    from musket.registry import Registry

    sims = work / "sims.csv"
    sims.write_text("ICCID,plan,state\n" + "".join(f"{i},iot-eu,inventory\n" for i in ICCIDS))
    mosquitto = Mosquitto(work / "broker", {SERVICE_USER: SERVICE_PASSWORD})
    # The line's jig runs the appliance (a brew within a few minutes): the counter event is the
    # unit's first telemetry, sent at once.
    unit = VirtualUnit(work / "eol", scenario={"iccid": ICCIDS[0]}, usage=BUSY_USAGE, speed=1)
    try:
        with Registry.open(work / "registry.sqlite", migrate=True) as registry:
            registry.import_sims(sims, ACTOR)
            unit.start()
            provision(unit.port, registry, BrokerSettings("127.0.0.1", mosquitto.port,
                                                          tls=False), ACTOR)
            users = registry.broker_users()
            (mosquitto.dir / "passwd").write_text(
                broker.render_hashed_password_file(users) + broker.render_password_file(
                    {SERVICE_USER: SERVICE_PASSWORD}))
            (mosquitto.dir / "acl").write_text(
                broker.render_acl([u for u, _ in users], [SERVICE_USER]))
            mosquitto.restart()
            unit.wait_ready()
            start = time.perf_counter()
            result = verify(unit.port, registry, ACTOR,
                            BrokerWatch("127.0.0.1", mosquitto.port, SERVICE_USER,
                                        SERVICE_PASSWORD), telemetry_timeout=600)
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
