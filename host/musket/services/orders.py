"""Orders of consumables through their states: placed (by the engine) -> shipped ->
installed. Installing resets the device's level (the counter total it counts from), starts the
next generation (whose order the engine may place in turn) and, where the device counts that
consumable itself, queues an audited counter command to set it to zero. Every change has its
row in the registry's audit table, in the same transaction."""

from __future__ import annotations

import json

from sqlalchemy import Engine, func, insert, select, update

from musket.registry.core import now, record_audit
from musket.registry.fleet_schema import fleet_events
from musket.registry.services_schema import svc_consumables, svc_orders, svc_outbox
from musket.services.errors import OrderStateError

STATES = ("placed", "shipped", "installed")
NEXT = {"placed": ("shipped", "installed"), "shipped": ("installed",), "installed": ()}
COMMAND_TRIES = 10  # a counter command is retried this often before it is given up


def set_order_state(engine: Engine, order_id: int, state: str, actor) -> None:
    """Moves order `order_id` to `state`; `actor` is a musket.registry.Actor or a name."""
    if state not in STATES:
        raise OrderStateError(f"order state {state!r}: one of {', '.join(STATES)}")
    actor = _as_actor(actor)
    with engine.begin() as conn:
        order = conn.execute(select(svc_orders).where(svc_orders.c.order_id == int(order_id))
                             ).first()
        if order is None:
            raise OrderStateError(f"no order {order_id}")
        if state not in NEXT[order.state]:
            raise OrderStateError(f"order {order_id} is {order.state}; it cannot become "
                                  f"{state} (next: {', '.join(NEXT[order.state]) or 'none'})")
        at = now()
        values = {"state": state, state: at}
        conn.execute(update(svc_orders).where(svc_orders.c.order_id == order.order_id)
                     .values(**values))
        changes = {"state": [order.state, state]}
        if state == "installed":
            changes.update(_install(conn, order, at))
        record_audit(conn, actor, "order-state", order.device_id,
                     {"order": order.order_id, "consumable": order.consumable, **changes})


def _install(conn, order, at) -> dict:
    c = svc_consumables.c
    key = (c.device_id == order.device_id) & (c.consumable == order.consumable)
    row = conn.execute(select(svc_consumables).where(key)).first()
    if row is None:
        return {}
    e = fleet_events.c
    total = conn.execute(select(func.max(e.total)).where(
        e.device_id == order.device_id, e.name == row.counter)).scalar() or 0.0
    conn.execute(update(svc_consumables).where(key).values(
        installed_total=total, installed=at, generation=row.generation + 1))
    changes = {"installed_total": [row.installed_total, total],
               "generation": [row.generation, row.generation + 1]}
    counts_itself = conn.execute(select(e.seq).where(
        e.device_id == order.device_id, e.name == order.consumable).limit(1)).first()
    if counts_itself:
        command = {"op": "counter", "name": order.consumable, "value": 0,
                   "reason": f"order {order.order_id} installed"}
        conn.execute(insert(svc_outbox).values(
            key=f"order-{order.order_id}-installed", kind="command", target=order.device_id,
            payload=json.dumps(command, sort_keys=True), state="pending", attempts=0,
            max_attempts=COMMAND_TRIES, next_at=at, created=at))
        changes["command"] = command
    return changes


def _as_actor(actor):
    from musket.registry import Actor

    if isinstance(actor, Actor):
        return actor
    name = str(actor or "").strip()
    if not name:
        raise OrderStateError("an order change needs who made it (actor)")
    return Actor("services", name[:64])
