"""End-of-line results in the registry: each test of a unit, whether the unit may ship, and the
yield report (per station and day: passed, failed, the failure codes).

A result and the unit's shippable mark are written in one transaction with an audit row, so a
unit is shippable exactly when its latest end-of-line test passed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update

from musket.registry.core import Registry, now, record_audit
from musket.registry.database import RegistryRefused
from musket.registry.records import Actor, iso, utc
from musket.registry.schema import devices, eol_results, eol_units


@dataclass
class EolResult:
    device_id: str
    passed: bool
    codes: list[str]
    measurements: dict
    seconds: float
    station: str = ""
    operator: str = ""
    at: datetime | None = None
    id: int | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "at": iso(self.at)}


@dataclass
class YieldRow:
    station: str
    day: str
    passed: int = 0
    failed: int = 0
    codes: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        tested = self.passed + self.failed
        return {"station": self.station, "day": self.day, "passed": self.passed,
                "failed": self.failed,
                "yield": round(self.passed / tested, 4) if tested else None,
                "codes": dict(self.codes.most_common())}


def record(registry: Registry, result: EolResult, actor: Actor) -> EolResult:
    """Stores one end-of-line result; the unit is shippable when it passed, not otherwise."""
    stamp = now()
    with registry.transaction() as conn:
        known = conn.execute(select(devices.c.device_id)
                             .where(devices.c.device_id == result.device_id)).scalar()
        if known is None:
            raise RegistryRefused(f"device {result.device_id} is not in the registry: "
                                  "provision the unit before its end-of-line test")
        result_id = conn.execute(insert(eol_results).values(
            device_id=result.device_id, at=stamp, station=actor.station,
            operator=actor.operator, passed=result.passed, codes=json.dumps(result.codes),
            measurements=json.dumps(result.measurements, sort_keys=True),
            seconds=round(result.seconds, 3))).inserted_primary_key[0]
        values = {"shippable": result.passed, "result_id": result_id, "updated": stamp}
        had = conn.execute(select(eol_units.c.shippable)
                           .where(eol_units.c.device_id == result.device_id)).first()
        if had is None:
            conn.execute(insert(eol_units).values(device_id=result.device_id, **values))
        else:
            conn.execute(update(eol_units).where(eol_units.c.device_id == result.device_id)
                         .values(**values))
        record_audit(conn, actor, "eol-pass" if result.passed else "eol-fail",
                     result.device_id, {"codes": result.codes, "shippable": result.passed,
                                        "result": result_id})
    result.id, result.at = result_id, stamp
    result.station, result.operator = actor.station, actor.operator
    return result


def shippable(registry: Registry, device_id: str) -> bool:
    """True only for a unit whose latest end-of-line test passed."""
    with registry.transaction() as conn:
        return bool(conn.execute(select(eol_units.c.shippable)
                                 .where(eol_units.c.device_id == device_id)).scalar())


def results(registry: Registry, device_id: str | None = None) -> list[EolResult]:
    query = select(eol_results).order_by(eol_results.c.id)
    if device_id:
        query = query.where(eol_results.c.device_id == device_id)
    with registry.transaction() as conn:
        return [_result(r) for r in conn.execute(query)]


def yield_report(registry: Registry, since: datetime | None = None,
                 station: str | None = None) -> list[YieldRow]:
    """Per station and UTC day: units passed and failed (each test counts) and how often each
    failure code failed a unit."""
    query = select(eol_results.c.station, eol_results.c.at, eol_results.c.passed,
                   eol_results.c.codes).order_by(eol_results.c.at)
    if since is not None:
        query = query.where(eol_results.c.at >= since)
    if station:
        query = query.where(eol_results.c.station == station)
    rows: dict[tuple[str, str], YieldRow] = {}
    with registry.transaction() as conn:
        for r in conn.execute(query):
            day = utc(r.at).date().isoformat()
            row = rows.setdefault((r.station, day), YieldRow(r.station, day))
            if r.passed:
                row.passed += 1
            else:
                row.failed += 1
                row.codes.update(json.loads(r.codes))
    return sorted(rows.values(), key=lambda row: (row.day, row.station))


def _result(r) -> EolResult:
    return EolResult(device_id=r.device_id, passed=bool(r.passed), codes=json.loads(r.codes),
                     measurements=json.loads(r.measurements), seconds=r.seconds,
                     station=r.station, operator=r.operator, at=utc(r.at), id=r.id)
