"""Pay-per-use: a statement per customer and month, computed from the committed counter events
only. An event counts in the month its device time falls in (UTC), whenever it arrived; the
fleet store keeps each (device, seq) once, so a late or repeated message changes nothing that
is not new. Amounts are decimal, rounded half-up to the cent, so a statement regenerated from
the same rows is the same to the byte (CSV and JSON writers sort everything they write)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import Connection, Engine, func, select

from musket.registry.fleet_schema import fleet_events
from musket.registry.services_schema import svc_customers, svc_sites, svc_tariffs
from musket.services.errors import ServicesInput

_CENT = Decimal("0.01")
USE_KIND = "use"  # the counter events a customer pays for


def period_bounds(period: str) -> tuple[int, int]:
    """The epoch seconds [start, end) of a "YYYY-MM" month, UTC."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", period or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ServicesInput(f"period {period!r}: give a month as YYYY-MM (e.g. 2026-12)")
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()), int(end.timestamp())


def _tariffs(conn: Connection) -> dict[str, dict]:
    return {scope: {"currency": cur, "minimum": Decimal(str(minimum)),
                    "prices": {k: Decimal(str(v)) for k, v in json.loads(prices).items()}}
            for scope, cur, minimum, prices in conn.execute(
                select(svc_tariffs.c.scope, svc_tariffs.c.currency, svc_tariffs.c.minimum,
                       svc_tariffs.c.prices))}


def quantities(conn: Connection, period: str, customer_id: str | None = None
               ) -> dict[tuple[str, str, str], float]:
    """(customer, product, counter) -> the sum of the committed use events' deltas in the
    period."""
    start, end = period_bounds(period)
    e, s = fleet_events.c, svc_sites.c
    query = (select(s.customer_id, s.product, e.name, func.sum(e.delta))
             .select_from(fleet_events.join(svc_sites, s.device_id == e.device_id))
             .where(e.kind == USE_KIND, e.time >= start, e.time < end)
             .group_by(s.customer_id, s.product, e.name))
    if customer_id:
        query = query.where(s.customer_id == customer_id)
    return {(c, p, n): float(q) for c, p, n, q in conn.execute(query)}


def statements(engine: Engine, period: str, customer_id: str | None = None) -> list[dict]:
    """One statement per customer with devices: a line per priced counter (quantity, unit
    price, amount), the monthly minimum and the total (never under the minimum)."""
    period_bounds(period)
    with engine.connect() as conn:
        tariffs = _tariffs(conn)
        used = quantities(conn, period, customer_id)
        query = select(svc_customers.c.customer_id).order_by(svc_customers.c.customer_id)
        if customer_id:
            query = query.where(svc_customers.c.customer_id == customer_id)
        customers = list(conn.execute(query).scalars())
        products = {}
        for c, p in conn.execute(select(svc_sites.c.customer_id, svc_sites.c.product)
                                 .distinct()):
            products.setdefault(c, set()).add(p)
    out = []
    for customer in customers:
        own = tariffs.get(f"customer:{customer}")
        lines: dict[str, dict] = {}
        currency, minimum = (own["currency"], own["minimum"]) if own else (None, Decimal(0))
        for product in sorted(products.get(customer, ())):
            tariff = tariffs.get(f"product:{product}")
            if tariff and not own:
                currency = currency or tariff["currency"]
                minimum = max(minimum, tariff["minimum"])
            prices = dict(tariff["prices"] if tariff else {})
            prices.update(own["prices"] if own else {})
            for counter, price in prices.items():
                q = Decimal(str(used.get((customer, product, counter), 0.0)))
                line = lines.setdefault(counter, {"counter": counter, "quantity": Decimal(0),
                                                  "unit_price": price, "amount": Decimal(0)})
                line["quantity"] += q
                line["amount"] += q * price
        rows = [{"counter": n, "quantity": float(v["quantity"]),
                 "unit_price": float(v["unit_price"]),
                 "amount": float(v["amount"].quantize(_CENT, ROUND_HALF_UP))}
                for n, v in sorted(lines.items())]
        subtotal = sum((Decimal(str(r["amount"])) for r in rows), Decimal(0))
        out.append({"customer_id": customer, "period": period, "currency": currency or "",
                    "lines": rows, "minimum": float(minimum.quantize(_CENT, ROUND_HALF_UP)),
                    "total": float(max(subtotal, minimum).quantize(_CENT, ROUND_HALF_UP))})
    return out


def to_json(statements_: list[dict]) -> str:
    return json.dumps(statements_, sort_keys=True, indent=2) + "\n"


CSV_FIELDS = ("customer_id", "period", "currency", "counter", "quantity", "unit_price",
              "amount", "minimum", "total")


def to_csv(statements_: list[dict]) -> str:
    """One row per statement line (a statement with no priced counter: one row without a
    counter), with the statement's minimum and total repeated on each."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for s in statements_:
        for line in s["lines"] or [{"counter": "", "quantity": "", "unit_price": "",
                                    "amount": ""}]:
            writer.writerow([s["customer_id"], s["period"], s["currency"], line["counter"],
                             line["quantity"], line["unit_price"], line["amount"],
                             s["minimum"], s["total"]])
    return buf.getvalue()
