"""What the team pages read that the fleet's own views (musket.fleet.views, plans) do not
offer: one page of a long list (devices, SIMs) at a time, and counts per day for the plots.

Each list is a page of the key's order (LIMIT/OFFSET over a primary key, filtered by a key
prefix as a range, so the index is used), so a page costs the same with ten devices or ten
thousand. The per-day counts are GROUP BYs in the database, never rows fetched to count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, and_, case, func, select

from musket.fleet.views import iso_utc
from musket.registry.fleet_schema import fleet_devices, fleet_events, fleet_sessions, fleet_usage
from musket.registry.schema import audit, devices, sims

PER_PAGE = 50
AUDIT_SHOWN = 15
DEVICE_FILTERS = ("all", "online", "offline", "never", "crashed", "diagnosed")
SIM_STATES_SHOWN = ("all", "inventory", "bound", "active", "suspended", "retired")


@dataclass
class Page:
    rows: list[dict]
    page: int
    pages: int
    total: int


def _page_of(conn, query, count_query, page: int, per_page: int) -> tuple[list, int, int]:
    total = conn.execute(count_query).scalar_one()
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    return conn.execute(query.limit(per_page).offset((page - 1) * per_page)).all(), page, total


def _prefix(column, prefix: str):
    # A range, not LIKE: SQLite uses an index for LIKE only when case-sensitive LIKE is on.
    return and_(column >= prefix, column < prefix + "\uffff")


def devices_page(engine: Engine, page: int = 1, prefix: str = "", only: str = "all",
                 per_page: int = PER_PAGE) -> Page:
    """Devices in ID order with their health: online, last seen, firmware (and its image),
    boots and reboot reasons, the last crash, heap, diagnosis codes, signal."""
    d, f = devices.c, fleet_devices.c
    where = []
    if prefix:
        where.append(_prefix(d.device_id, prefix))
    where += {"all": [], "online": [f.online.is_(True)],
              "offline": [f.online.is_(False)], "never": [f.device_id.is_(None)],
              "crashed": [f.crash.is_not(None)],
              "diagnosed": [f.diagnosis.is_not(None), f.diagnosis != "[]"]}[only]
    joined = devices.join(fleet_devices, f.device_id == d.device_id, isouter=True)
    query = select(d.device_id, d.iccid, f.online, f.last_seen, f.firmware, f.image,
                   f.boot_count,
                   f.reset_cause, f.reboot_reasons, f.crash, f.heap_free, f.heap_largest,
                   f.diagnosis, f.signal).select_from(joined).where(*where) \
        .order_by(d.device_id)
    count = select(func.count()).select_from(joined).where(*where)
    with engine.connect() as conn:
        rows, page, total = _page_of(conn, query, count, page, per_page)
    out = []
    for r in rows:
        m = dict(r._mapping)
        m["online"] = None if m["last_seen"] is None else bool(m["online"])
        m["last_seen"] = iso_utc(m["last_seen"])
        m["reboot_reasons"] = json.loads(m["reboot_reasons"] or "{}")
        m["diagnosis"] = json.loads(m["diagnosis"] or "[]")
        out.append(m)
    return Page(out, page, -(-total // per_page) or 1, total)


def health_summary(engine: Engine) -> dict:
    """Across the fleet: devices online, offline and never heard from; reboot reasons and
    diagnosis codes, each summed over the devices reporting them."""
    f = fleet_devices.c
    with engine.connect() as conn:
        known = conn.execute(select(func.count()).select_from(devices)).scalar_one()
        by_online = dict(conn.execute(select(f.online, func.count()).group_by(f.online)).all())
        reasons: dict[str, int] = {}
        codes: dict[str, int] = {}
        for rr, dx in conn.execute(select(f.reboot_reasons, f.diagnosis).where(
                (f.reboot_reasons.is_not(None)) | (f.diagnosis.is_not(None)))):
            for reason, n in json.loads(rr or "{}").items():
                reasons[reason] = reasons.get(reason, 0) + int(n)
            for code in json.loads(dx or "[]"):
                codes[code] = codes.get(code, 0) + 1
    online, offline = by_online.get(True, 0), by_online.get(False, 0)
    return {"devices": known, "online": online, "offline": offline,
            "never": known - online - offline, "reboot_reasons": reasons,
            "diagnosis": dict(sorted(codes.items(), key=lambda kv: -kv[1]))}


def _days(days: int, today: date | None) -> list[date]:
    today = today or datetime.now(UTC).date()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def sessions_per_day(engine: Engine, days: int = 7, today: date | None = None) -> dict:
    """Connections opened per day (UTC) over the last `days` days, fleet-wide."""
    span = _days(days, today)
    since = datetime.combine(span[0], datetime.min.time(), UTC)
    c = fleet_sessions.c.connected
    with engine.connect() as conn:
        day = func.date(c) if conn.dialect.name == "sqlite" else func.date_trunc("day", c)
        counts = {str(d)[:10]: int(n) for d, n in conn.execute(
            select(day, func.count()).where(c >= since).group_by(day))}
    return {"days": [d.isoformat() for d in span],
            "sessions": [counts.get(d.isoformat(), 0) for d in span]}


def uses_per_day(engine: Engine, days: int = 7, today: date | None = None) -> dict:
    """Counter events per day and counter (events carry the device's epoch seconds)."""
    span = _days(days, today)
    since = int(datetime.combine(span[0], datetime.min.time(), UTC).timestamp())
    e = fleet_events.c
    day = e.time / 86400
    out: dict[str, list[float]] = {}
    with engine.connect() as conn:
        for n, name, delta in conn.execute(
                select(day, e.name, func.sum(e.delta)).where(e.time >= since, e.kind == "use")
                .group_by(day, e.name)):
            key = datetime.fromtimestamp(int(n) * 86400, UTC).date()
            if key in span:
                out.setdefault(name, [0.0] * len(span))[span.index(key)] += float(delta)
    return {"days": [d.isoformat() for d in span], "counters": out}


def data_per_day(engine: Engine, days: int = 30, today: date | None = None) -> dict:
    """Bytes per day, fleet-wide: what devices reported and what the carrier billed."""
    span = _days(days, today)
    u = fleet_usage.c
    with engine.connect() as conn:
        rows = {d: (int(dev or 0), None if car is None else int(car))
                for d, dev, car in conn.execute(
                    select(u.day, func.sum(u.device_tx + u.device_rx), func.sum(u.carrier_bytes))
                    .where(u.day >= span[0]).group_by(u.day))}
    return {"days": [d.isoformat() for d in span],
            "device_bytes": [rows.get(d, (0, None))[0] for d in span],
            "carrier_bytes": [rows.get(d, (0, None))[1] for d in span]}


def sims_page(engine: Engine, page: int = 1, prefix: str = "", state: str = "all",
              per_page: int = PER_PAGE) -> Page:
    """SIMs in ICCID order: plan, state, since when, and the device holding it."""
    s = sims.c
    where = [_prefix(s.iccid, prefix)] if prefix else []
    if state != "all":
        where.append(s.state == state)
    joined = sims.join(devices, devices.c.iccid == s.iccid, isouter=True)
    query = select(s.iccid, s.plan, s.state, s.updated, devices.c.device_id) \
        .select_from(joined).where(*where).order_by(s.iccid)
    count = select(func.count()).select_from(sims).where(*where)
    with engine.connect() as conn:
        rows, page, total = _page_of(conn, query, count, page, per_page)
    out = [{**r._mapping, "updated": iso_utc(r.updated)} for r in rows]
    return Page(out, page, -(-total // per_page) or 1, total)


def sim_states(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(sims.c.state, func.count()).group_by(sims.c.state))
                    .all())


def factory_yield(engine: Engine, days: int = 7, today: date | None = None) -> dict | None:
    """End-of-line tests per day over the last `days` days, every station together (the
    factory's own yield report, musket.registry.eol); None when no unit was tested then."""
    from musket.registry import Registry, eol

    span = _days(days, today)
    since = datetime.combine(span[0], datetime.min.time(), UTC)
    by_day: dict[str, list[int]] = {}
    for row in eol.yield_report(Registry(engine), since=since):
        day = by_day.setdefault(row.day, [0, 0])
        day[0] += row.passed + row.failed
        day[1] += row.passed
    tested = [by_day.get(d.isoformat(), [0, 0])[0] for d in span]
    passed = [by_day.get(d.isoformat(), [0, 0])[1] for d in span]
    if not sum(tested):
        return None
    return {"days": [d.isoformat() for d in span], "tested": tested, "passed": passed,
            "yield": round(100 * sum(passed) / sum(tested), 1)}


def status_by_customer(engine: Engine) -> dict[str, dict]:
    """Per customer: devices on its sites, how many are online now, offline, never heard
    from (one GROUP BY over the sites and the fleet's device state)."""
    from musket.registry.services_schema import svc_sites

    s, f = svc_sites.c, fleet_devices.c
    online = func.sum(case((f.online.is_(True), 1), else_=0))
    offline = func.sum(case((f.online.is_(False), 1), else_=0))
    with engine.connect() as conn:
        rows = conn.execute(
            select(s.customer_id, func.count(), online, offline)
            .select_from(svc_sites.join(fleet_devices, f.device_id == s.device_id,
                                        isouter=True))
            .group_by(s.customer_id)).all()
    return {c: {"devices": int(n), "online": int(on or 0), "offline": int(off or 0),
                "never": int(n) - int(on or 0) - int(off or 0)} for c, n, on, off in rows}


def per_day(times: list[str | None], days: int = 7, today: date | None = None) -> dict:
    """How many of `times` (ISO strings, as the services' views give them) fall on each of
    the last `days` days."""
    span = [d.isoformat() for d in _days(days, today)]
    counts = dict.fromkeys(span, 0)
    for t in times:
        if t and t[:10] in counts:
            counts[t[:10]] += 1
    return {"days": span, "counts": [counts[d] for d in span]}


def recent_audit(engine: Engine, actions: tuple[str, ...]) -> list[dict]:
    """The newest audit rows of these actions (the changes a page makes), newest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(audit).where(audit.c.action.in_(actions))
                            .order_by(audit.c.id.desc()).limit(AUDIT_SHOWN)).all()
    return [{**r._mapping, "at": iso_utc(r.at)} for r in rows]
