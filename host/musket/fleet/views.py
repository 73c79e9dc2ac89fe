"""What the fleet's tables say, as plain data for the CLI's tables and --json: the fleet at a
glance, one device with its history, the rejected messages. Every figure is computed from the
committed rows, so every copy of the service (and any station) shows the same."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from sqlalchemy import Engine, and_, func, select

from musket.fleet.sql import aware
from musket.registry.fleet_schema import (
    fleet_devices,
    fleet_events,
    fleet_messages,
    fleet_readings,
    fleet_rejected,
    fleet_sessions,
    fleet_usage,
)
from musket.registry.schema import devices, ota_devices, sims

SESSIONS_SHOWN = 20
EVENTS_SHOWN = 20


def month_start(today: date | None = None) -> date:
    today = today or datetime.now(UTC).date()
    return today.replace(day=1)


def iso_utc(t) -> str | None:
    """A stored time as ISO 8601 in UTC with a Z, as every view and page shows times."""
    t = aware(t)
    return t.isoformat().replace("+00:00", "Z") if t else None


def gaps(conn, device_id: str | None = None) -> dict[str, int]:
    """Telemetry sequence numbers missing per device, between the first and last stored."""
    m = fleet_messages.c
    query = select(m.device_id, func.max(m.mseq) - func.min(m.mseq) + 1 - func.count()) \
        .group_by(m.device_id)
    if device_id:
        query = query.where(m.device_id == device_id)
    return {d: int(n) for d, n in conn.execute(query)}


def counters(conn, device_id: str | None = None) -> dict[str, dict[str, float]]:
    """Each device's counters: the total of each counter's newest stored event."""
    e = fleet_events.c
    newest = select(e.device_id, e.name, func.max(e.seq).label("seq")) \
        .group_by(e.device_id, e.name)
    if device_id:
        newest = newest.where(e.device_id == device_id)
    newest = newest.subquery()
    out: dict[str, dict[str, float]] = {}
    for d, name, total in conn.execute(
            select(e.device_id, e.name, e.total).select_from(fleet_events.join(
                newest, and_(newest.c.device_id == e.device_id, newest.c.seq == e.seq)))):
        out.setdefault(d, {})[name] = total
    return out


def _open_service(conn, device_id: str | None = None) -> dict[str, int]:
    e = fleet_events.c
    query = select(e.device_id, func.count()).where(e.kind == "service", e.closed.is_(None)) \
        .group_by(e.device_id)
    if device_id:
        query = query.where(e.device_id == device_id)
    return {d: int(n) for d, n in conn.execute(query)}


def _month_bytes(conn, since: date) -> dict[str, int]:
    u = fleet_usage.c
    return {i: int(n or 0) for i, n in conn.execute(
        select(u.iccid, func.sum(u.device_tx + u.device_rx)).where(u.day >= since)
        .group_by(u.iccid))}


def fleet_status(engine: Engine, today: date | None = None) -> list[dict]:
    """One row per device in the registry: online, last seen, signal, data this month,
    counters, open service events, firmware and firmware image, gaps."""
    with engine.connect() as conn:
        gap = gaps(conn)
        counts = counters(conn)
        service = _open_service(conn)
        data = _month_bytes(conn, month_start(today))
        rows = conn.execute(
            select(devices.c.device_id, devices.c.iccid, sims.c.state.label("sim_state"),
                   fleet_devices)
            .join(fleet_devices, fleet_devices.c.device_id == devices.c.device_id,
                  isouter=True)
            .join(sims, sims.c.iccid == devices.c.iccid, isouter=True)
            .order_by(devices.c.device_id)).all()
    out = []
    for r in rows:
        m = r._mapping
        device_id = m["device_id"]
        out.append({
            "device_id": device_id,
            "online": bool(m["online"]) if m["last_seen"] is not None else None,
            "last_seen": iso_utc(m["last_seen"]),
            "signal": m["signal"],
            "iccid": m["iccid"],
            "sim_state": m["sim_state"],
            "data_paused": bool(m["data_paused"]),
            "data_month_bytes": data.get(m["iccid"], 0),
            "counters": counts.get(device_id, {}),
            "open_service_events": service.get(device_id, 0),
            "firmware": m["firmware"],
            "image": m["image"],
            "gaps": gap.get(device_id, 0),
        })
    return out


def device_detail(engine: Engine, device_id: str) -> dict | None:
    """One device: its state and health, its SIM, counters, connection history (newest
    first), recent counter events, what was rejected from it and its update campaigns
    (musket.ota.campaign); None if unknown."""
    with engine.connect() as conn:
        reg = conn.execute(select(devices.c.device_id, devices.c.iccid, devices.c.imei,
                                  devices.c.board, sims.c.plan, sims.c.state)
                           .join(sims, sims.c.iccid == devices.c.iccid, isouter=True)
                           .where(devices.c.device_id == device_id)).first()
        if reg is None:
            return None
        state = conn.execute(select(fleet_devices)
                             .where(fleet_devices.c.device_id == device_id)).first()
        sessions = conn.execute(
            select(fleet_sessions.c.connected, fleet_sessions.c.disconnected,
                   fleet_sessions.c.why)
            .where(fleet_sessions.c.device_id == device_id)
            .order_by(fleet_sessions.c.id.desc()).limit(SESSIONS_SHOWN)).all()
        events = conn.execute(
            select(fleet_events.c.seq, fleet_events.c.time, fleet_events.c.kind,
                   fleet_events.c.name, fleet_events.c.delta, fleet_events.c.total,
                   fleet_events.c.info)
            .where(fleet_events.c.device_id == device_id)
            .order_by(fleet_events.c.seq.desc()).limit(EVENTS_SHOWN)).all()
        stored = conn.execute(select(func.count()).select_from(fleet_messages)
                              .where(fleet_messages.c.device_id == device_id)).scalar_one()
        readings = conn.execute(select(func.count()).select_from(fleet_readings)
                                .where(fleet_readings.c.device_id == device_id)).scalar_one()
        rejected = conn.execute(select(fleet_rejected.c.reason, fleet_rejected.c.count,
                                       fleet_rejected.c.detail)
                                .where(fleet_rejected.c.source == device_id)).all()
        ota = conn.execute(select(ota_devices.c.campaign, ota_devices.c.state,
                                  ota_devices.c.reason, ota_devices.c.updated)
                           .where(ota_devices.c.device_id == device_id)
                           .order_by(ota_devices.c.updated.desc())).all()
        gap = gaps(conn, device_id).get(device_id, 0)
        counts = counters(conn, device_id).get(device_id, {})
        service = _open_service(conn, device_id).get(device_id, 0)
        data = _month_bytes(conn, month_start()).get(reg.iccid, 0)
    s = state._mapping if state is not None else {}

    def js(key):
        return json.loads(s[key]) if s.get(key) else None

    return {
        "device_id": device_id, "iccid": reg.iccid, "imei": reg.imei, "board": reg.board,
        "plan": reg.plan, "sim_state": reg.state,
        "online": bool(s["online"]) if s else None, "last_seen": iso_utc(s.get("last_seen")),
        "status_at": iso_utc(s.get("status_at")), "firmware": s.get("firmware"),
        "image": s.get("image"), "signal": s.get("signal"),
        "health": {"boot_count": s.get("boot_count"), "reset_cause": s.get("reset_cause"),
                   "reboot_reasons": js("reboot_reasons"), "crash": s.get("crash"),
                   "crash_time": s.get("crash_time"), "uptime_s": s.get("uptime_s"),
                   "heap_free": s.get("heap_free"), "heap_largest": s.get("heap_largest"),
                   "diagnosis": js("diagnosis"), "session_s": s.get("session_s"),
                   "connect_failures": s.get("connect_failures"),
                   "rejects": js("rejects")},
        "data": {"tx_total": s.get("data_tx"), "rx_total": s.get("data_rx"),
                 "month_bytes": data, "paused": bool(s.get("data_paused")),
                 "carrier_stops": s.get("data_stops")},
        "counters": counts, "open_service_events": service,
        "messages": {"stored": stored, "readings": readings, "gaps": gap},
        "sessions": [{"connected": iso_utc(c), "disconnected": iso_utc(d), "why": w}
                     for c, d, w in sessions],
        "events": [dict(e._mapping) for e in events],
        "rejected": [{"reason": r, "count": n, "detail": d} for r, n, d in rejected],
        "ota": [{"campaign": c, "state": st, "reason": why, "updated": iso_utc(t)}
                for c, st, why, t in ota],
    }


def rejected(engine: Engine) -> list[dict]:
    """Every rejected source and reason, with its count, newest first."""
    r = fleet_rejected.c
    with engine.connect() as conn:
        return [{"source": s, "reason": why, "count": int(n), "first": iso_utc(f),
                 "last": iso_utc(last), "detail": d}
                for s, why, n, f, last, d in conn.execute(
                    select(r.source, r.reason, r.count, r.first, r.last, r.detail)
                    .order_by(r.last.desc()))]
