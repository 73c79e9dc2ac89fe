"""Helpers for the services' tests: sites, tariffs and counter events through the real fleet
store, as the devices' own codec encodes them."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

from fleethelp import ACTOR, status, telemetry
from sqlalchemy import insert

from musket.fleet.store import FleetStore, Incoming
from musket.registry.services_schema import svc_tariffs
from musket.services import sites

T0 = 1_796_083_200  # 2026-12-01 00:00 UTC
PER_MESSAGE = 20


def write_sites(folder, rows) -> str:
    """rows: (device_id, customer_id, product, location)."""
    path = folder / "sites.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["device_id", "customer_id", "product", "location"])
        writer.writerows(rows)
    return str(path)


def import_sites(engine, folder, rows) -> dict:
    return sites.import_sites(engine, write_sites(folder, rows), ACTOR)


def add_tariff(engine, scope, prices, minimum=0.0, currency="EUR") -> None:
    with engine.begin() as conn:
        conn.execute(insert(svc_tariffs).values(scope=scope, currency=currency,
                                                minimum=minimum, prices=json.dumps(prices)))


class Device:
    """One device's use, as telemetry messages: each call to `use` makes a message with
    `n` use events of `counter` at device time `t`."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.mseq = 0
        self.seq = 0
        self.totals: dict[str, int] = {}

    def use(self, counter: str, n: int, t: int) -> list[Incoming]:
        """Messages for `n` uses of `counter` at device time `t` (a message holds at most
        PER_MESSAGE events, as a device's packet limit would have it)."""
        out = []
        for start in range(0, n, PER_MESSAGE):
            self.mseq += 1
            events = []
            for _ in range(min(PER_MESSAGE, n - start)):
                self.seq += 1
                self.totals[counter] = self.totals.get(counter, 0) + 1
                events.append((self.seq, counter, self.totals[counter]))
            payload = telemetry(self.mseq, events=events, t0=t)
            out.append(Incoming(f"d/{self.device_id}/e", payload, False,
                                datetime.fromtimestamp(t, UTC)))
        return out


def take(engine, *batches) -> None:
    FleetStore(engine).take([m for batch in batches for m in batch])


def status_message(device_id: str, at: int, boots: int, reasons: dict, uptime: int,
                   codes=()) -> Incoming:
    """The device's status map (contract A) as it sends it at device time `at`."""
    fields = {"t": at, "bc": boots, "rr": reasons, "up": uptime, "fw": "1.4.0",
              "dx": list(codes)}
    return Incoming(f"d/{device_id}/s", status(**fields), False, datetime.fromtimestamp(at, UTC))


def readings_message(device: Device, values: list[dict], t: int) -> Incoming:
    """One telemetry message of readings (a minute apart from device time `t`) from `device`,
    continuing its message sequence."""
    device.mseq += 1
    device.rseq = getattr(device, "rseq", 0)
    rows = []
    for v in values:
        device.rseq += 1
        rows.append((device.rseq, v))
    return Incoming(f"d/{device.device_id}/t", telemetry(device.mseq, readings=rows, t0=t),
                    False, datetime.fromtimestamp(t, UTC))
