"""Customers and sites from a CSV file: which customer each device belongs to, its product
(whose rules file applies) and a location label a technician can find it by.

Columns (a header line names them, in any order): ``device_id``, ``customer_id``,
``customer_name`` (optional; the ID when left out), ``product``, ``location``. Every bad row is
named by its line; when there is one, nothing is imported. A device listed again moves to the
new customer, product or location; the import is one audited transaction."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select, update

from musket.fleet.sql import insert_new
from musket.registry.core import record_audit
from musket.registry.schema import devices
from musket.registry.services_schema import svc_customers, svc_sites
from musket.services.errors import ServicesInput

COLUMNS = ("device_id", "customer_id", "product", "location")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PRODUCT = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
LOCATION_MAX = 128
PROBLEMS_SHOWN = 20


class SitesError(ServicesInput):
    """A site list that cannot be imported; the message names each bad line."""


@dataclass(frozen=True)
class Site:
    line: int
    device_id: str
    customer_id: str
    customer_name: str
    product: str
    location: str


def read(path: str | Path) -> list[Site]:
    """The file's rows, checked; raises SitesError naming every bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SitesError(f"{path}: cannot read: {e}") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise SitesError(f"{path.name}: line 1: the header lacks {', '.join(missing)} "
                         f"(columns: {', '.join(COLUMNS)}, customer_name optional)")
    reader.fieldnames = header
    out, problems, seen = [], [], {}
    for row in reader:
        n = reader.line_num
        get = {k: (row.get(k) or "").strip() for k in (*COLUMNS, "customer_name")}
        if not any(get.values()):
            continue
        bad = []
        if not NAME.fullmatch(get["device_id"]):
            bad.append(f"device_id {get['device_id']!r} is not a device ID")
        elif get["device_id"] in seen:
            bad.append(f"device {get['device_id']} is listed on line {seen[get['device_id']]}"
                       " too")
        if not NAME.fullmatch(get["customer_id"]):
            bad.append(f"customer_id {get['customer_id']!r}: 1-64 letters, digits, _ . -")
        if not PRODUCT.fullmatch(get["product"]):
            bad.append(f"product {get['product']!r}: 1-32 lower-case letters, digits, _ -")
        if not get["location"] or len(get["location"]) > LOCATION_MAX:
            bad.append(f"location: 1-{LOCATION_MAX} characters")
        if len(get["customer_name"]) > 128:
            bad.append("customer_name: at most 128 characters")
        if bad:
            problems.append(f"line {n}: " + "; ".join(bad))
            continue
        seen[get["device_id"]] = n
        out.append(Site(n, get["device_id"], get["customer_id"],
                        get["customer_name"] or get["customer_id"], get["product"],
                        get["location"]))
    if problems:
        raise SitesError(_summary(path, problems))
    if not out:
        raise SitesError(f"{path.name}: no sites in the file")
    return out


def import_sites(engine: Engine, path: str | Path, actor) -> dict:
    """Imports the file's sites in one transaction (nothing when a row is bad, including a
    device the registry does not hold); returns {"sites": n, "customers": n}."""
    rows = read(path)
    with engine.begin() as conn:
        known = set()
        ids = [r.device_id for r in rows]
        for i in range(0, len(ids), 500):
            known.update(conn.execute(select(devices.c.device_id).where(
                devices.c.device_id.in_(ids[i:i + 500]))).scalars())
        unknown = [f"line {r.line}: device {r.device_id} is not in the registry"
                   for r in rows if r.device_id not in known]
        if unknown:
            raise SitesError(_summary(Path(path), unknown))
        customers = {r.customer_id: r.customer_name for r in rows}
        insert_new(conn, svc_customers, [{"customer_id": c, "name": n}
                                         for c, n in sorted(customers.items())])
        for c, n in sorted(customers.items()):
            conn.execute(update(svc_customers).where(svc_customers.c.customer_id == c)
                         .values(name=n))
        insert_new(conn, svc_sites, [{"device_id": r.device_id, "customer_id": r.customer_id,
                                      "product": r.product, "location": r.location}
                                     for r in rows])
        for r in rows:
            conn.execute(update(svc_sites).where(svc_sites.c.device_id == r.device_id).values(
                customer_id=r.customer_id, product=r.product, location=r.location))
        record_audit(conn, actor, "sites-import", Path(path).name[:64],
                     {"sites": len(rows), "customers": sorted(customers)})
    return {"sites": len(rows), "customers": len(customers)}


def _summary(path: Path, problems: list[str]) -> str:
    more = len(problems) - PROBLEMS_SHOWN
    text = f"{path.name}: {len(problems)} bad row(s), nothing imported: " + \
        "; ".join(problems[:PROBLEMS_SHOWN])
    return text + (f"; and {more} more" if more > 0 else "")
