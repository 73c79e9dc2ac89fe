"""Technician tickets: one per problem per device while it lasts, carrying what a technician
needs before driving out: the device's diagnosis codes with the recommended repair and the
parts (musket.diagnoses: the same table the device uses), the location label and the
connection history. A ticket closes itself when the device reports healthy again: a status
since the ticket opened, no diagnosis code, and no unexpected reboot for the rule's
`healthy_after_hours`; or the technician closes it on site with what they did (audited)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, insert, select, update

from musket import diagnoses
from musket.fleet.sql import aware
from musket.fleet.views import iso_utc
from musket.registry.core import now as registry_now
from musket.registry.core import record_audit
from musket.registry.fleet_schema import fleet_devices, fleet_sessions
from musket.registry.services_schema import svc_reboots, svc_tickets
from musket.services.errors import TicketError

SESSIONS_CARRIED = 10  # the newest connections a ticket carries
NO_PARTS = "none"


def generation(conn: Connection, device_id: str, problem: str) -> tuple[int, datetime | None]:
    """How many of this device's tickets for `problem` were closed, and when the last was:
    the next ticket's number, and since when the problem counts again."""
    t = svc_tickets.c
    n, last = conn.execute(select(func.count(), func.max(t.closed)).where(
        t.device_id == device_id, t.problem == problem, t.closed.is_not(None))).one()
    return int(n), aware(last)


def open_ticket(conn: Connection, device_id: str, customer_id: str, location: str,
                problem: str, summary: str | None, now: datetime) -> int:
    """Opens the ticket; returns its ID. `problem` is the rule's key (product/rule), one
    ticket per device at a time; `summary` what the rule says the problem is."""
    codes = json.loads(conn.execute(select(fleet_devices.c.diagnosis).where(
        fleet_devices.c.device_id == device_id)).scalar() or "[]")
    found = [(code, diagnoses.find(code)) for code in codes]
    repairs = [f"{code}: {d.repair}" for code, d in found if d]
    parts: list[str] = []
    for _, d in found:
        for part in (d.parts.split(";") if d else []):
            part = part.strip()
            if part and part != NO_PARTS and part not in parts:
                parts.append(part)
    if not summary:
        summary = "; ".join(f"{code}: {d.problem}" for code, d in found if d) or problem
    s = fleet_sessions.c
    sessions = [{"connected": iso_utc(c), "disconnected": iso_utc(d), "why": w}
                for c, d, w in conn.execute(
                    select(s.connected, s.disconnected, s.why).where(s.device_id == device_id)
                    .order_by(s.id.desc()).limit(SESSIONS_CARRIED))]
    return conn.execute(insert(svc_tickets).values(
        device_id=device_id, customer_id=customer_id, problem=problem[:64],
        codes=json.dumps(codes), repair=(summary + (" | " if repairs else "") +
                                         " | ".join(repairs)),
        parts=json.dumps(parts), location=location, connections=json.dumps(sessions),
        opened=now).returning(svc_tickets.c.ticket_id)).scalar_one()


def close_healthy(conn: Connection, healthy_after: dict[str, float], now: datetime) -> int:
    """Closes the open tickets whose device is healthy again; returns how many.
    healthy_after: problem -> hours without an unexpected reboot that count as healthy."""
    t, d = svc_tickets.c, fleet_devices.c
    rows = conn.execute(select(t.ticket_id, t.device_id, t.problem, t.opened, d.status_at,
                               d.diagnosis, d.online)
                        .join(fleet_devices, d.device_id == t.device_id)
                        .where(t.closed.is_(None))).all()
    closed = 0
    for ticket_id, device_id, problem, opened, status_at, codes, online in rows:
        if not online or status_at is None or aware(status_at) <= aware(opened):
            continue
        if json.loads(codes or "[]"):
            continue
        quiet = now - timedelta(hours=healthy_after.get(problem, 1.0))
        last_reboot = conn.execute(select(func.max(svc_reboots.c.at)).where(
            svc_reboots.c.device_id == device_id)).scalar()
        if last_reboot is not None and aware(last_reboot) > quiet:
            continue
        closed += conn.execute(update(svc_tickets).where(
            t.ticket_id == ticket_id, t.closed.is_(None)).values(closed=now)).rowcount
    return closed


def close_on_site(engine: Engine, ticket_id: int, actor, repair: str,
                  at: datetime | None = None) -> dict:
    """The technician closes an open ticket with the repair they made; the audit row keeps
    who and what. Returns the audit's changes."""
    repair = (repair or "").strip()
    if not repair:
        raise TicketError("closing a ticket needs the repair made (--repair)")
    with engine.begin() as conn:
        ticket = conn.execute(select(svc_tickets).where(
            svc_tickets.c.ticket_id == int(ticket_id))).first()
        if ticket is None:
            raise TicketError(f"no ticket {ticket_id}")
        if ticket.closed is not None:
            raise TicketError(f"ticket {ticket_id} was closed at {iso_utc(ticket.closed)}")
        closed = at or registry_now()
        conn.execute(update(svc_tickets).where(svc_tickets.c.ticket_id == ticket.ticket_id)
                     .values(closed=closed))
        changes = {"ticket": ticket.ticket_id, "problem": ticket.problem,
                   "codes": json.loads(ticket.codes), "repair": repair[:200],
                   "closed": iso_utc(closed)}
        record_audit(conn, actor, "ticket-closed", ticket.device_id, changes)
    return changes
