"""Data used per SIM per day: what the devices report, what the carrier bills, and where the
two disagree.

A device reports cumulative totals (``tx``/``rx`` in its status, bytes on its data link since
its first boot, kept on its flash). The first totals the service hears from a device are the
base; each later pair becomes a delta, added to the day the status arrived on, for the SIM in
the device at the time. A total smaller than the last one is a device whose counters began
again (a fresh flash): the new total is then all new use.

The carrier's usage file is CSV with a header ``iccid,day,bytes`` (day as YYYY-MM-DD, bytes
up and down together, as carriers bill). An import stores its good rows (a row again for the
same SIM and day replaces the old figure: the carrier's file is the truth for its days) and
reports every bad row and unknown ICCID by line, storing nothing from them.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Connection, Engine, bindparam, func, select, update

from musket.errors import BadInput
from musket.fleet.sql import IN_CHUNK, insert_new
from musket.identity import IdentityError, check_iccid
from musket.registry.fleet_schema import fleet_usage
from musket.registry.schema import devices, sims

CARRIER_HEADER = ("iccid", "day", "bytes")
DEFAULT_TOLERANCE = 0.05  # a 5 % difference between device and carrier is flagged
PROBLEMS_SHOWN = 20


class CarrierFileError(BadInput):
    """The carrier's file cannot be read at all (missing, not CSV, wrong header)."""


def totals_change(row, status) -> tuple[dict, tuple[int, int] | None]:
    """The device's new cumulative totals (its fleet_devices values) and the use they add to
    what `row` last held, as (tx, rx); None for the first totals heard: the base for the next
    (what came before is history)."""
    tx, rx = status.tx or 0, status.rx or 0
    old_tx, old_rx = row.data_tx, row.data_rx
    values = {"data_tx": tx, "data_rx": rx}
    if old_tx is None and old_rx is None:
        return values, None
    d_tx = tx if old_tx is None or tx < old_tx else tx - old_tx
    d_rx = rx if old_rx is None or rx < old_rx else rx - old_rx
    return values, (d_tx, d_rx)


def add_device_use(conn: Connection, use: dict[tuple[str, date], tuple[int, int]]) -> None:
    """Adds devices' use {(device_id, day): (tx, rx)} to the day of the SIM in each device, in
    a few statements whatever the count (the SIMs' rows in ICCID order)."""
    device_ids = sorted({device_id for device_id, _ in use})
    iccids = {}
    for i in range(0, len(device_ids), IN_CHUNK):
        iccids.update((device_id, iccid) for device_id, iccid in conn.execute(
            select(devices.c.device_id, devices.c.iccid).where(
                devices.c.device_id.in_(device_ids[i:i + IN_CHUNK]))))
    per_sim: dict[tuple[str, date], list[int]] = {}
    for (device_id, day), (tx, rx) in use.items():
        iccid = iccids.get(device_id)
        if iccid is None or not (tx or rx):
            continue
        added = per_sim.setdefault((iccid, day), [0, 0])
        added[0] += tx
        added[1] += rx
    if not per_sim:
        return
    keys = sorted(per_sim)
    insert_new(conn, fleet_usage, [{"iccid": iccid, "day": day, "device_tx": 0,
                                    "device_rx": 0, "carrier_bytes": None}
                                   for iccid, day in keys])
    u = fleet_usage.c
    conn.execute(update(fleet_usage).where(u.iccid == bindparam("b_iccid"),
                                           u.day == bindparam("b_day"))
                 .values(device_tx=u.device_tx + bindparam("b_tx"),
                         device_rx=u.device_rx + bindparam("b_rx")),
                 [{"b_iccid": iccid, "b_day": day, "b_tx": per_sim[(iccid, day)][0],
                   "b_rx": per_sim[(iccid, day)][1]} for iccid, day in keys])


def _set_usage(conn: Connection, iccid: str, day: date, **values) -> None:
    # The SIM's row for the day, made if need be (by whichever writer comes first), updated.
    insert_new(conn, fleet_usage, [{"iccid": iccid, "day": day, "device_tx": 0,
                                    "device_rx": 0, "carrier_bytes": None}])
    conn.execute(update(fleet_usage).where(fleet_usage.c.iccid == iccid,
                                           fleet_usage.c.day == day).values(**values))


@dataclass
class CarrierImport:
    """What an import of the carrier's file did."""

    source: str
    rows: int = 0  # stored
    unknown: int = 0  # rows whose ICCID the registry does not hold
    bad: int = 0  # rows that cannot be read
    problems: list[str] = field(default_factory=list)  # by line, the first PROBLEMS_SHOWN

    def problem(self, text: str) -> None:
        if len(self.problems) < PROBLEMS_SHOWN:
            self.problems.append(text)

    def as_dict(self) -> dict:
        return {"source": self.source, "stored": self.rows, "unknown_iccids": self.unknown,
                "bad_rows": self.bad, "problems": self.problems}


def import_carrier(engine: Engine, path: str | os.PathLike[str]) -> CarrierImport:
    """Stores the carrier's per-SIM per-day bytes from `path`; returns what it did."""
    result = CarrierImport(os.fspath(path))
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise CarrierFileError(f"{path}: cannot read: {e.strerror}") from None
    with f, engine.begin() as conn:
        known = set(conn.execute(select(sims.c.iccid)).scalars())
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader, [])]
        except (csv.Error, UnicodeDecodeError) as e:
            raise CarrierFileError(f"{path}: not a CSV file ({e})") from None
        if tuple(header[:3]) != CARRIER_HEADER:
            raise CarrierFileError(f"{path}: header {','.join(header)!r}, expected "
                                   f"{','.join(CARRIER_HEADER)}")
        try:
            for line, fields in enumerate(reader, start=2):
                if not any(x.strip() for x in fields):
                    continue
                parsed = _carrier_row(fields, line, result)
                if parsed is None:
                    continue
                iccid, day, nbytes = parsed
                if iccid not in known:
                    result.unknown += 1
                    result.problem(f"line {line}: ICCID {iccid} is not in the registry")
                    continue
                _set_usage(conn, iccid, day, carrier_bytes=nbytes)
                result.rows += 1
        except (csv.Error, UnicodeDecodeError) as e:
            raise CarrierFileError(f"{path}: unreadable after line {reader.line_num} ({e}); "
                                   "nothing was stored") from None
    return result


def _carrier_row(fields: list[str], line: int, result: CarrierImport):
    if len(fields) < 3:
        result.bad += 1
        result.problem(f"line {line}: {len(fields)} fields, expected iccid,day,bytes")
        return None
    try:
        iccid = check_iccid(fields[0].strip())
    except IdentityError as e:
        result.bad += 1
        result.problem(f"line {line}: {e}")
        return None
    try:
        day = date.fromisoformat(fields[1].strip())
    except ValueError:
        result.bad += 1
        result.problem(f"line {line}: day {fields[1]!r} is not YYYY-MM-DD")
        return None
    text = fields[2].strip()
    if not text.isdigit():
        result.bad += 1
        result.problem(f"line {line}: bytes {text!r} is not a whole number of bytes")
        return None
    return iccid, day, int(text)


@dataclass(frozen=True)
class Reconciled:
    iccid: str
    device_bytes: int
    carrier_bytes: int
    days: int  # days both reported

    @property
    def difference(self) -> float:
        """(device - carrier) / carrier: negative when the device under-reports."""
        return (self.device_bytes - self.carrier_bytes) / self.carrier_bytes \
            if self.carrier_bytes else 0.0

    def flagged(self, tolerance: float) -> bool:
        return abs(self.difference) > tolerance

    def as_dict(self, tolerance: float) -> dict:
        return {"iccid": self.iccid, "device_bytes": self.device_bytes,
                "carrier_bytes": self.carrier_bytes, "days": self.days,
                "difference": round(self.difference, 4), "flagged": self.flagged(tolerance)}


def reconcile(engine: Engine, since: date, until: date) -> list[Reconciled]:
    """Device-reported and carrier bytes per SIM over the days in [since, until] that the
    carrier's file covers."""
    u = fleet_usage.c
    query = (select(u.iccid, func.sum(u.device_tx + u.device_rx), func.sum(u.carrier_bytes),
                    func.count())
             .where(u.carrier_bytes.is_not(None), u.day >= since, u.day <= until)
             .group_by(u.iccid).order_by(u.iccid))
    with engine.connect() as conn:
        return [Reconciled(iccid, int(dev or 0), int(car or 0), int(n))
                for iccid, dev, car, n in conn.execute(query)]
