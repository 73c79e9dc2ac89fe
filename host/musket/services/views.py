"""What the services' tables say, as plain data (lists of JSON-able dicts, times as ISO
strings) for the CLI's tables, --json and the web pages: customers, sites, orders, tickets,
billing statements, and the one change a view may make (an order's state)."""

from __future__ import annotations

import json

from sqlalchemy import Engine, func, select

from musket.fleet.views import iso_utc
from musket.registry.services_schema import (
    svc_customers,
    svc_orders,
    svc_sites,
    svc_tariffs,
    svc_tickets,
)
from musket.services import billing
from musket.services import orders as _orders
from musket.services.errors import ServicesInput

TICKET_STATES = ("open", "closed")


def customers(engine: Engine) -> list[dict]:
    """Every customer with the number of its devices."""
    c, s = svc_customers.c, svc_sites.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.customer_id, c.name, func.count(s.device_id))
            .join(svc_sites, s.customer_id == c.customer_id, isouter=True)
            .group_by(c.customer_id, c.name).order_by(c.customer_id)).all()
    return [{"customer_id": i, "name": n, "devices": int(d)} for i, n, d in rows]


def sites(engine: Engine, customer_id: str | None = None) -> list[dict]:
    s = svc_sites.c
    query = select(s.device_id, s.customer_id, s.product, s.location).order_by(s.device_id)
    if customer_id:
        query = query.where(s.customer_id == customer_id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def orders(engine: Engine, customer_id: str | None = None, state: str | None = None
           ) -> list[dict]:
    if state is not None and state not in _orders.STATES:
        raise ServicesInput(f"order state {state!r}: one of {', '.join(_orders.STATES)}")
    o = svc_orders.c
    query = select(svc_orders).order_by(o.order_id)
    if customer_id:
        query = query.where(o.customer_id == customer_id)
    if state:
        query = query.where(o.state == state)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [{"order_id": r.order_id, "device_id": r.device_id, "customer_id": r.customer_id,
             "consumable": r.consumable, "quantity": r.quantity, "state": r.state,
             "placed": iso_utc(r.placed), "shipped": iso_utc(r.shipped),
             "installed": iso_utc(r.installed), "runout_predicted": iso_utc(r.runout_predicted)}
            for r in rows]


def tickets(engine: Engine, state: str | None = None, customer_id: str | None = None
            ) -> list[dict]:
    if state is not None and state not in TICKET_STATES:
        raise ServicesInput(f"ticket state {state!r}: one of {', '.join(TICKET_STATES)}")
    t = svc_tickets.c
    query = select(svc_tickets).order_by(t.ticket_id)
    if customer_id:
        query = query.where(t.customer_id == customer_id)
    if state == "open":
        query = query.where(t.closed.is_(None))
    elif state == "closed":
        query = query.where(t.closed.is_not(None))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [{"ticket_id": r.ticket_id, "device_id": r.device_id, "customer_id": r.customer_id,
             "problem": r.problem, "codes": json.loads(r.codes), "repair": r.repair,
             "parts": json.loads(r.parts), "location": r.location,
             "connections": json.loads(r.connections),
             "opened": iso_utc(r.opened), "closed": iso_utc(r.closed)}
            for r in rows]


def tariffs(engine: Engine) -> list[dict]:
    """Every tariff: its scope ("product:<name>" or "customer:<id>"), currency, monthly
    minimum and prices per counter."""
    t = svc_tariffs.c
    with engine.connect() as conn:
        rows = conn.execute(select(t.scope, t.currency, t.minimum, t.prices)
                            .order_by(t.scope)).all()
    return [{"scope": scope, "currency": cur, "minimum": minimum, "prices": json.loads(p)}
            for scope, cur, minimum, p in rows]


def statements(engine: Engine, period: str, customer_id: str | None = None) -> list[dict]:
    """Billing statements for the month "YYYY-MM" (musket.services.billing)."""
    return billing.statements(engine, period, customer_id)


def set_order_state(engine: Engine, order_id: int, state: str, actor: str) -> None:
    """placed -> shipped -> installed, audited (musket.services.orders)."""
    _orders.set_order_state(engine, order_id, state, actor)
