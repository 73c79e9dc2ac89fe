"""The fleet service's store alone, without the broker: how many messages a second one copy
commits to a real PostgreSQL (a throwaway server, without fsync), one batch per transaction,
as `musket fleet serve` takes them (musket.fleet.ingest.BATCH_MAX at a time).

Telemetry: one message per device, as after a 2-hour outage (8 readings and a counter event,
made by the firmware's own codec). Statuses: each device's reconnection and its will (a bare 1,
then a 0), each opening or closing a session.

Figures:
  fleet.store_msgs_per_s      telemetry messages committed a second
  fleet.store_statuses_per_s  statuses committed a second
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "host"))  # the throwaway PostgreSQL server
sys.path.insert(0, str(ROOT / "tests" / "fleet"))  # telemetry made by the firmware's codec

from fleethelp import telemetry  # noqa: E402
from pgserver import PostgresServer  # noqa: E402

from musket import simfleet  # noqa: E402
from musket.fleet.ingest import BATCH_MAX  # noqa: E402
from musket.fleet.store import FleetStore, Incoming  # noqa: E402
from musket.registry.core import Registry, default_actor  # noqa: E402

DEVICES = int(os.environ.get("MUSKET_BENCH_FLEET_STORE_DEVICES", "2000"))
READINGS = [(r, {"rssi": -71 - r % 5, "tc": 21.5 + r / 10, "v": 3.3}) for r in range(1, 9)]


def _rate(store: FleetStore, messages: list[Incoming]) -> tuple[float, float]:
    t0 = time.perf_counter()
    for i in range(0, len(messages), BATCH_MAX):
        store.take(messages[i:i + BATCH_MAX])
    seconds = time.perf_counter() - t0
    return len(messages) / seconds, seconds


def main() -> None:
    pg = PostgresServer()
    pg.start()
    try:
        with Registry.open(pg.new_database(), migrate=True) as registry:
            devices = simfleet.enroll(registry, DEVICES, Path(tempfile.mkdtemp()),
                                      default_actor("bench", "bench"))
            store = FleetStore(registry.engine)
            backlog = [Incoming(f"d/{d.id}/e", telemetry(1, [(1, "brew", 1)], READINGS))
                       for d in devices]
            statuses = [Incoming(f"d/{d.id}/s", b"1") for d in devices] + \
                [Incoming(f"d/{d.id}/s", b"0") for d in devices]
            rate, seconds = _rate(store, backlog)
            print(f"telemetry: {len(backlog):,} messages in {seconds:.2f} s, batches of "
                  f"{BATCH_MAX}")
            print(f"FIGURE fleet.store_msgs_per_s {rate:.0f} msg/s")
            rate, seconds = _rate(store, statuses)
            print(f"statuses: {len(statuses):,} in {seconds:.2f} s, batches of {BATCH_MAX}")
            print(f"FIGURE fleet.store_statuses_per_s {rate:.0f} msg/s")
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
