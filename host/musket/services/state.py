"""The engine's own state, kept in the registry's database so that a restart or a second
engine carries on where the last pass left: cursors over the fleet's committed rows, the
unexpected reboots seen in the devices' reboot counts, and since when a diagnosis code or a low
signal has lasted. Everything here is derived from committed rows; two engines writing it
derive the same values, so neither harms the other."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, delete, select, update

from musket.fleet.sql import insert_new
from musket.registry.services_schema import svc_cursors, svc_reboots

# Reset causes a device reports that are nobody's fault: someone switched it on, it woke from
# its own sleep, or it was told to restart. The rest (watchdog, hard, a crash) count.
EXPECTED_REBOOTS = ("power-on", "deep-sleep", "soft")
SEQ = "seq"  # the newest counter event (seq) evaluated
RSEQ = "rseq"  # the newest reading evaluated


class Cursors:
    """One pass's view of svc_cursors: read at the start, changes written at the end."""

    def __init__(self, conn: Connection) -> None:
        self.values: dict[tuple[str, str], float] = {
            (d, n): p for d, n, p in conn.execute(
                select(svc_cursors.c.device_id, svc_cursors.c.name, svc_cursors.c.position))}
        self.changed: dict[tuple[str, str], float | None] = {}

    def get(self, device_id: str, name: str, default=None):
        return self.values.get((device_id, name), default)

    def set(self, device_id: str, name: str, value: float | None) -> None:
        if self.values.get((device_id, name)) != value:
            self.values[(device_id, name)] = value
            self.changed[(device_id, name)] = value

    def names(self, device_id: str, prefix: str) -> list[str]:
        return [n for (d, n), v in self.values.items()
                if d == device_id and n.startswith(prefix) and v is not None]

    def save(self, conn: Connection) -> None:
        keep = {k: v for k, v in self.changed.items() if v is not None}
        gone = [k for k, v in self.changed.items() if v is None]
        if keep:
            insert_new(conn, svc_cursors, [{"device_id": d, "name": n, "position": v}
                                           for (d, n), v in sorted(keep.items())])
            c = svc_cursors.c
            conn.execute(update(svc_cursors).where(and_(
                c.device_id == bindparam("d"), c.name == bindparam("n")))
                .values(position=bindparam("p")),
                [{"d": d, "n": n, "p": v} for (d, n), v in sorted(keep.items())])
        for d, n in gone:
            conn.execute(delete(svc_cursors).where(svc_cursors.c.device_id == d,
                                                   svc_cursors.c.name == n))
        self.changed.clear()


def record_reboots(conn: Connection, cursors: Cursors, device_id: str, reasons_json,
                   at: datetime | None) -> int:
    """Compares the device's reboot counts with those seen last and records each new
    unexpected reboot (at the status that reported it); returns how many. The counts at the
    first sight of a device are its past: taken as the baseline, not as new reboots."""
    if not reasons_json or at is None:
        return 0
    reasons = json.loads(reasons_json)
    first_sight = cursors.get(device_id, "rr") is None
    boots = int(cursors.get(device_id, "rr", 0))
    rows = []
    for reason, count in sorted(reasons.items()):
        if not isinstance(count, int):
            continue
        seen = int(cursors.get(device_id, f"rr:{reason}", 0))
        if count > seen and not first_sight and reason not in EXPECTED_REBOOTS:
            for _ in range(count - seen):
                boots += 1
                rows.append({"device_id": device_id, "boot": boots, "at": at,
                             "reason": reason[:32]})
        if count != seen:
            cursors.set(device_id, f"rr:{reason}", count)
    cursors.set(device_id, "rr", boots)
    if rows:
        insert_new(conn, svc_reboots, rows)
    return len(rows)


def reboots_since(conn: Connection, device_id: str, since: datetime) -> list:
    r = svc_reboots.c
    return conn.execute(select(r.boot, r.at, r.reason).where(
        r.device_id == device_id, r.at >= since).order_by(r.boot)).all()


def track_codes(cursors: Cursors, device_id: str, codes: list[str], at_epoch: float) -> None:
    """Since when each of the device's diagnosis codes has been present (cursor
    "code:<code>"); a code gone is forgotten, so its return starts a new spell."""
    present = set(codes)
    for name in cursors.names(device_id, "code:"):
        if name[5:] not in present:
            cursors.set(device_id, name, None)
    for code in sorted(present):
        if cursors.get(device_id, f"code:{code}") is None:
            cursors.set(device_id, f"code:{code}", at_epoch)
