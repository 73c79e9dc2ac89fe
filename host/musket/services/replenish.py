"""Replenishment just in time: a consumable's remaining level is what was installed less what
the counted uses since took (the counter total at the installation is the zero point); the
device's own usage rate over the recent days predicts the run-out date; an order is due once
the level will not last the supplier's lead time plus a margin. One order per installation
(generation): the engine's trigger key holds it, and the orders table's unique key again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, insert, select

from musket.fleet.sql import insert_new
from musket.registry.fleet_schema import fleet_events
from musket.registry.services_schema import svc_consumables, svc_orders
from musket.services.rules import Consumable

DAY_S = 86400
MIN_SPAN_S = 3600  # under an hour of use says nothing about a daily rate


@dataclass(frozen=True)
class Level:
    generation: int
    remaining: float  # in the consumable's unit (kg, litres)
    uses_per_day: float | None
    runout: datetime | None  # predicted; None while the rate is unknown

    def due(self, consumable: Consumable, now: datetime) -> bool:
        if self.remaining <= 0:
            return True
        if self.runout is None:
            return False
        need = timedelta(days=consumable.lead_time_days + consumable.margin_days)
        return self.runout - now <= need


def level(conn: Connection, device_id: str, consumable: Consumable, total: float,
          now: datetime) -> Level:
    """The consumable's level in the device at counter total `total` (the first sight of a
    device counts as a fresh installation at counter zero)."""
    c = svc_consumables.c
    key = (c.device_id == device_id) & (c.consumable == consumable.name)
    row = conn.execute(select(svc_consumables).where(key)).first()
    if row is None:
        insert_new(conn, svc_consumables, [{
            "device_id": device_id, "consumable": consumable.name,
            "counter": consumable.counter, "installed_total": 0.0, "installed": now,
            "generation": 0}])
        row = conn.execute(select(svc_consumables).where(key)).first()
    remaining = consumable.capacity - (total - row.installed_total) * consumable.per_use
    rate = uses_per_day(conn, device_id, consumable, now)
    runout = None
    if rate:
        runout = now + timedelta(days=remaining / (rate * consumable.per_use))
    return Level(row.generation, remaining, rate, runout)


def uses_per_day(conn: Connection, device_id: str, consumable: Consumable,
                 now: datetime) -> float | None:
    """The device's uses of the consumable's counter per day over the rate window (device
    time), or None with less than an hour of history."""
    e = fleet_events.c
    end = int(now.timestamp())
    start = end - int(consumable.rate_window_days * DAY_S)
    n, first = conn.execute(select(func.sum(e.delta), func.min(e.time)).where(
        e.device_id == device_id, e.name == consumable.counter, e.kind == "use",
        e.time >= start, e.time <= end)).one()
    if not n or first is None or end - first < MIN_SPAN_S:
        return None
    return float(n) / ((end - first) / DAY_S)


def place(conn: Connection, device_id: str, customer_id: str, consumable: Consumable,
          lvl: Level, now: datetime, quantity: float | None = None) -> int:
    """Places the order for this installation's consumable; returns its ID."""
    return conn.execute(insert(svc_orders).values(
        device_id=device_id, customer_id=customer_id, consumable=consumable.name,
        generation=lvl.generation, quantity=quantity or consumable.order_quantity,
        state="placed", placed=now, runout_predicted=lvl.runout,
        arrives=now + timedelta(days=consumable.lead_time_days))
        .returning(svc_orders.c.order_id)).scalar_one()


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
