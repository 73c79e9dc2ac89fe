"""Service events: what a device's counter rules raise (a counter event of kind "service",
`name/N:action` in app/counter.py: descale every 500 brews, a filter at 2,000 litres). Each is
open from the moment it is stored until someone closes it here, naming who did the work, so
that customer success and the technicians see the same list."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select, update

from musket.errors import BadInput
from musket.registry.fleet_schema import fleet_events


def open_events(engine: Engine, device_id: str) -> list[dict]:
    e = fleet_events.c
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(e.seq, e.time, e.name, e.info, e.total)
            .where(e.device_id == device_id, e.kind == "service", e.closed.is_(None))
            .order_by(e.seq))]


def close(engine: Engine, device_id: str, by: str, seq: int | None = None) -> list[int]:
    """Closes the device's open service event `seq` (every open one when None); returns the
    sequence numbers closed. BadInput when there is nothing of that to close."""
    if not by or not by.strip():
        raise BadInput("who did the service is required (--by)")
    e = fleet_events.c
    where = [e.device_id == device_id, e.kind == "service", e.closed.is_(None)]
    if seq is not None:
        where.append(e.seq == seq)
    with engine.begin() as conn:
        seqs = [s for (s,) in conn.execute(select(e.seq).where(*where).order_by(e.seq))]
        if not seqs:
            what = f"service event {seq}" if seq is not None else "service events"
            raise BadInput(f"{device_id}: no open {what}")
        conn.execute(update(fleet_events).where(*where)
                     .values(closed=datetime.now(UTC), closed_by=by.strip()[:64]))
    return seqs
