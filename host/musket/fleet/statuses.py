"""A batch's status messages (``d/<id>/s``) applied in order, in a few statements whatever the
batch's size.

Each status opens or closes a session and moves the device's health and data totals on, and
each reads what the one before it left. So the batch's devices and their open sessions are read
once, the statuses are applied in order to those copies, and what changed is written at the
end: one statement per table and kind of change. A backlog after an outage is two statuses per
device (the online one and the will or the next online one), all of them here at once; one
round trip each would make them the slowest part of the drain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from types import SimpleNamespace

from sqlalchemy import Connection, select

from musket import messages
from musket.fleet import usage
from musket.fleet.sql import IN_CHUNK, aware, insert_many, update_many
from musket.registry.fleet_schema import fleet_devices, fleet_sessions

# What fleet_devices.image holds for a device whose status sent no image version: it runs the
# firmware image flashed on the line (contract A sends "im" only once an image update
# confirmed). Stored, not left NULL, so that a unit flashed again on the line says so.
FACTORY_IMAGE = "factory"


@dataclass
class _Session:
    """One session as this batch leaves it; `id` is None for one opened in this batch."""

    id: int | None
    device_id: str
    connected: datetime
    disconnected: datetime | None = None
    why: str | None = None


def apply(conn: Connection, statuses: list[tuple[str, messages.Status, object]],
          digests: list[str], broker_lost_at: datetime | None) -> dict[str, dict]:
    """Applies (device_id, status, message) in order; `digests` are their payloads'. Each
    device's fleet_devices row exists (the batch's devices are added first). Writes the
    sessions and the SIMs' use; returns what changes in each device's fleet_devices row, for
    the caller to write with the rest of the batch's changes to those rows."""
    ids = sorted({device_id for device_id, _, _ in statuses})
    rows = _rows(conn, ids)
    open_sessions = _open_sessions(conn, ids)
    last_closed: dict[str, _Session] = {}  # closed (or blamed) in this batch, per device
    changed: dict[int, _Session] = {}  # stored sessions this batch closes or blames
    opened: list[_Session] = []
    values: dict[str, dict] = {}  # device_id -> its fleet_devices values, merged in order
    use: dict[tuple[str, date], tuple[int, int]] = {}
    for (device_id, status, message), digest in zip(statuses, digests, strict=True):
        row = rows[device_id]
        at = message.received
        open_session = open_sessions.get(device_id)
        broker_restarted = open_session is not None and broker_lost_at is not None and \
            broker_lost_at >= aware(open_session.connected)
        if row.status_digest == digest and (message.retain or status.raw
                                            or not broker_restarted):
            # The same bytes as the last status: the broker's retained copy handed again at
            # a (re)subscribe, or a redelivery of one this service took but had not
            # acknowledged: nothing new (a map carries its time, so a new one differs). Only
            # a bare 1 sent live after the broker restarted is a new session.
            continue
        # A device publishes its status at each session start and again with its health
        # every health_interval_s: the latter is no new session unless the device restarted
        # meanwhile (its boot count or uptime says so) or the broker did.
        new_session = status.online and (open_session is None or not status.raw
                                         or broker_restarted or _rebooted(row, status))
        if open_session is not None and (new_session or not status.online):
            if not status.online:
                open_session.why, open_session.disconnected = "will", at
            elif broker_restarted:
                open_session.why, open_session.disconnected = "broker-restart", broker_lost_at
            else:
                open_session.why, open_session.disconnected = "reconnect", at
            if open_session.id is not None:
                changed[open_session.id] = open_session
            last_closed[device_id] = open_session
            del open_sessions[device_id]
        if status.online and _new_data_stop(row, status):
            # The session that ended last ended because the carrier stopped the SIM's data,
            # whatever the broker saw (the will, at the keep-alive's end).
            blamed = last_closed.get(device_id) or _last_closed(conn, device_id)
            if blamed is not None:
                blamed.why = "data-stop"
                last_closed[device_id] = blamed
                if blamed.id is not None:
                    changed[blamed.id] = blamed
        if new_session:
            open_sessions[device_id] = _Session(None, device_id, at)
            opened.append(open_sessions[device_id])
        now = {"online": status.online, "status_at": at, "status_digest": digest}
        if status.online:
            now.update(_health(status))
        if status.tx is not None or status.rx is not None:
            totals, added = usage.totals_change(row, status)
            now.update(totals)
            if added is not None:
                before = use.get((device_id, at.date()), (0, 0))
                use[(device_id, at.date())] = (before[0] + added[0], before[1] + added[1])
        vars(row).update(now)
        values.setdefault(device_id, {}).update(now)
    _write(conn, changed, opened)
    if use:
        usage.add_device_use(conn, use)
    return values


def _rows(conn: Connection, ids: list[str]) -> dict[str, SimpleNamespace]:
    out = {}
    for i in range(0, len(ids), IN_CHUNK):
        for row in conn.execute(select(fleet_devices).where(
                fleet_devices.c.device_id.in_(ids[i:i + IN_CHUNK]))):
            out[row.device_id] = SimpleNamespace(**row._asdict())
    return out


def _open_sessions(conn: Connection, ids: list[str]) -> dict[str, _Session]:
    # Each device's newest open session.
    s = fleet_sessions.c
    out = {}
    for i in range(0, len(ids), IN_CHUNK):
        for sid, device_id, connected in conn.execute(
                select(s.id, s.device_id, s.connected)
                .where(s.device_id.in_(ids[i:i + IN_CHUNK]), s.disconnected.is_(None))
                .order_by(s.id)):
            out[device_id] = _Session(sid, device_id, connected)
    return out


def _last_closed(conn: Connection, device_id: str) -> _Session | None:
    # The device's newest closed session as stored (rare: only on a carrier data stop).
    s = fleet_sessions.c
    row = conn.execute(select(s.id, s.connected, s.disconnected, s.why).where(
        s.device_id == device_id, s.disconnected.is_not(None))
        .order_by(s.id.desc()).limit(1)).first()
    return None if row is None else _Session(row.id, device_id, row.connected,
                                             row.disconnected, row.why)


def _write(conn: Connection, changed: dict[int, _Session], opened: list[_Session]) -> None:
    if changed:
        update_many(conn, fleet_sessions, "id", [
            {"id": sid, "disconnected": changed[sid].disconnected, "why": changed[sid].why}
            for sid in sorted(changed)])
    if opened:
        insert_many(conn, fleet_sessions, [
            {"device_id": o.device_id, "connected": o.connected,
             "disconnected": o.disconnected, "why": o.why} for o in opened])


def _new_data_stop(row, status: messages.Status) -> bool:
    # The device counted a carrier data stop since its last status (it cannot say so while its
    # data is stopped); the first count heard is only the base.
    return status.data_stops is not None and row.data_stops is not None and \
        status.data_stops > row.data_stops


def _rebooted(row, status: messages.Status) -> bool:
    if row.boot_count is not None and status.boot_count is not None:
        if status.boot_count != row.boot_count:
            return True
    return row.uptime_s is not None and status.uptime_s is not None and \
        status.uptime_s < row.uptime_s


def _health(status: messages.Status) -> dict:
    # A key the device left out is unknown, so what was known stays (a bare 1 leaves out
    # every key). `dp` alone is sent only while true: its absence says the data flows; `im`
    # only once an image update confirmed: its absence says the factory image runs.
    if not status.raw:
        return {}
    out = {"firmware": status.firmware, "image": status.image or FACTORY_IMAGE,
           "boot_count": status.boot_count,
           "reset_cause": status.reset_cause, "crash_time": status.crash_time,
           "crash": status.crash, "uptime_s": status.uptime_s, "session_s": status.session_s,
           "connect_failures": status.connect_failures, "heap_free": status.heap_free,
           "heap_largest": status.heap_largest, "data_stops": status.data_stops}
    for key, value in (("reboot_reasons", status.reboot_reasons), ("rejects", status.rejects),
                       ("diagnosis", status.diagnosis)):
        out[key] = None if value is None else json.dumps(value)
    out = {k: v for k, v in out.items() if v is not None}
    out["data_paused"] = status.data_paused
    return out
