"""Plans as data, what each SIM's data costs this month, the month's forecast, and the alerts at
70, 90 and 100 % of a plan.

A plan file is TOML, one table per plan::

    [plans.iot-eu-10mb]
    monthly_fee = 1.50        # per SIM, in `currency`
    included_mb = 10          # per SIM; a pooled plan pools every SIM's allowance
    overage_per_mb = 0.40     # beyond the allowance
    pooled = false
    currency = "EUR"          # optional, EUR when left out

A SIM's plan is the one the registry names for it (the vendor's SIM list, sims.plan). An MB
is 1,000,000 bytes, as carriers' rate cards count it. A SIM counts towards a pool while it is
bound, active or suspended (a SIM in stock or retired is billed nothing here).

Each alert is a row keyed by (subject, month, threshold): a SIM's ICCID, or ``pool:<plan>``
for a pooled plan. Whichever copy of the service (or command) notices a crossing first inserts
it; every later look finds it there, so each alert is raised once, across restarts.
"""

from __future__ import annotations

import calendar
import math
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, insert, select

from musket.errors import BadInput
from musket.fleet.sql import insert_new
from musket.registry.fleet_schema import fleet_alerts, fleet_plans, fleet_usage
from musket.registry.schema import sims

BYTES_PER_MB = 1_000_000
THRESHOLDS = (70, 90, 100)  # percent of a plan's allowance
BILLED_STATES = ("bound", "active", "suspended")
_FIELDS = {  # field: (types accepted, what the message calls it, required)
    "monthly_fee": ((int, float), "a number", True),
    "included_mb": ((int, float), "a number", True),
    "overage_per_mb": ((int, float), "a number", True),
    "pooled": ((bool,), "true or false", True),
    "currency": ((str,), "a 3-letter currency code", False),
}
_PLAN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class PlanFileError(BadInput):
    """A plan file that cannot be used; the message names the line and field."""


@dataclass(frozen=True)
class Plan:
    name: str
    monthly_fee: float
    included_bytes: int
    overage_per_mb: float
    pooled: bool
    currency: str = "EUR"


def read_plans(path: str | os.PathLike[str]) -> list[Plan]:
    """The plans in the TOML file at `path`; PlanFileError naming the line and field of the
    first problem."""
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise PlanFileError(f"{path}: cannot read: {e}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PlanFileError(f"{path}: not TOML: {e}") from None
    tables = doc.get("plans")
    if not isinstance(tables, dict) or not tables:
        raise PlanFileError(f"{path}: no [plans.NAME] tables")
    plans = []
    for name, fields in tables.items():
        where = f"{path}:{_line_of(text, name)}"
        if not _PLAN_NAME.fullmatch(name) or not isinstance(fields, dict):
            raise PlanFileError(f"{where}: plan {name!r}: expected [plans.NAME] with NAME of "
                                "1-64 letters, digits, '.', '_' or '-'")
        for key in fields:
            if key not in _FIELDS:
                raise PlanFileError(f"{path}:{_line_of(text, name, key)}: plan {name}: "
                                    f"unknown field {key!r} (known: {', '.join(_FIELDS)})")
        for key, (types, what, required) in _FIELDS.items():
            line = f"{path}:{_line_of(text, name, key)}"
            if key not in fields:
                if required:
                    raise PlanFileError(f"{where}: plan {name}: {key} is missing ({what})")
                continue
            value = fields[key]
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise PlanFileError(f"{line}: plan {name}: {key} is {value!r}, expected {what}")
            if isinstance(value, float) and not math.isfinite(value) or \
                    not isinstance(value, (bool, str)) and value < 0:
                raise PlanFileError(f"{line}: plan {name}: {key} is {value!r}, expected "
                                    "0 or more")
            if key == "currency" and not re.fullmatch(r"[A-Z]{3}", value):
                raise PlanFileError(f"{line}: plan {name}: currency {value!r}, expected "
                                    f"{what} such as EUR")
        plans.append(Plan(name, float(fields["monthly_fee"]),
                          round(fields["included_mb"] * BYTES_PER_MB),
                          float(fields["overage_per_mb"]), fields["pooled"],
                          fields.get("currency", "EUR")))
    return plans


def _line_of(text: str, plan: str, key: str | None = None) -> int:
    # The line of a plan's table header, or of a field in it (tomllib gives values, not
    # where they were): the first match after the header.
    header = re.compile(r"\s*\[\s*plans\.[\"']?%s[\"']?\s*\]" % re.escape(plan))
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return 1
    if key is None:
        return start + 1
    field_re = re.compile(r"\s*%s\s*=" % re.escape(key))
    for i in range(start + 1, len(lines)):
        if lines[i].lstrip().startswith("["):
            break
        if field_re.match(lines[i]):
            return i + 1
    return start + 1


def import_plans(engine: Engine, path: str | os.PathLike[str]) -> list[Plan]:
    """Reads the file, then stores every plan in it (replacing plans of the same name), all
    or none."""
    plans = read_plans(path)
    with engine.begin() as conn:
        names = [p.name for p in plans]
        conn.execute(delete(fleet_plans).where(fleet_plans.c.name.in_(names)))
        conn.execute(insert(fleet_plans), [p.__dict__ for p in plans])
    return plans


def plans(engine: Engine) -> dict[str, Plan]:
    with engine.connect() as conn:
        return {r.name: Plan(**dict(r._mapping)) for r in conn.execute(
            select(fleet_plans).order_by(fleet_plans.c.name))}


@dataclass
class SimUsage:
    iccid: str
    plan: str | None
    state: str
    used_bytes: int
    carrier_bytes: int | None
    forecast_bytes: int
    included_bytes: int | None  # the SIM's own allowance, or its pool's share
    cost: float | None
    forecast_cost: float | None
    currency: str | None
    pooled: bool = False

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def month_usage(engine: Engine, now: datetime | None = None) -> tuple[list[SimUsage],
                                                                       list[dict]]:
    """Per SIM (with a plan or with data this month) and per pooled plan: data this month,
    cost, and the month's forecast from the days so far."""
    now = now or datetime.now(UTC)
    first = now.date().replace(day=1)
    days = calendar.monthrange(now.year, now.month)[1]
    elapsed = max((now - datetime(now.year, now.month, 1, tzinfo=UTC)).total_seconds()
                  / 86400, 1.0)  # a first day's hours say little of a month: at least one
    u = fleet_usage.c
    with engine.connect() as conn:
        used = {i: (int(d or 0), None if c is None else int(c)) for i, d, c in conn.execute(
            select(u.iccid, func.sum(u.device_tx + u.device_rx), func.sum(u.carrier_bytes))
            .where(u.day >= first).group_by(u.iccid))}
        rows = conn.execute(select(sims.c.iccid, sims.c.plan, sims.c.state)
                            .order_by(sims.c.iccid)).all()
    known = plans(engine)
    sims_out: list[SimUsage] = []
    pools: dict[str, list[SimUsage]] = {}
    for iccid, plan_name, state in rows:
        dev, car = used.get(iccid, (0, None))
        plan = known.get(plan_name)
        if not dev and car is None and (plan is None or state not in BILLED_STATES):
            continue
        forecast = round(dev / elapsed * days)
        s = SimUsage(iccid, plan_name, state, dev, car, forecast,
                     plan.included_bytes if plan else None, None, None,
                     plan.currency if plan else None)
        if plan is not None and state in BILLED_STATES:
            if plan.pooled:
                s.pooled = True
                pools.setdefault(plan.name, []).append(s)
            else:
                s.cost = _cost(plan, 1, dev)
                s.forecast_cost = _cost(plan, 1, forecast)
        sims_out.append(s)
    pool_out = []
    for name, members in pools.items():
        plan = known[name]
        total = sum(m.used_bytes for m in members)
        forecast = sum(m.forecast_bytes for m in members)
        cost = _cost(plan, len(members), total)
        over = cost - plan.monthly_fee * len(members)
        for m in members:  # the pool's overage shared by use
            m.cost = round(plan.monthly_fee + (over * m.used_bytes / total if total else 0), 4)
        pool_out.append({"plan": name, "sims": len(members), "used_bytes": total,
                         "included_bytes": plan.included_bytes * len(members),
                         "forecast_bytes": forecast, "cost": cost,
                         "forecast_cost": _cost(plan, len(members), forecast),
                         "currency": plan.currency})
    return sims_out, pool_out


def _cost(plan: Plan, sims_n: int, used: int) -> float:
    over = max(0, used - plan.included_bytes * sims_n)
    return round(plan.monthly_fee * sims_n + over / BYTES_PER_MB * plan.overage_per_mb, 4)


def raise_alerts(engine: Engine, now: datetime | None = None) -> list[dict]:
    """Inserts each alert whose threshold this month's data has crossed and that is not
    raised yet; returns the ones this call raised."""
    now = now or datetime.now(UTC)
    month = now.strftime("%Y-%m")
    sims_usage, pools = month_usage(engine, now)
    due = []
    for s in sims_usage:
        if s.included_bytes and s.cost is not None and not s.pooled:
            due += _crossed(s.iccid, s.used_bytes, s.included_bytes)
    for p in pools:
        if p["included_bytes"]:
            due += _crossed(f"pool:{p['plan']}", p["used_bytes"], p["included_bytes"])
    raised = []
    with engine.begin() as conn:
        for subject, threshold, used, included in due:
            row = {"subject": subject, "month": month, "threshold": threshold, "raised": now,
                   "used_bytes": used, "included_bytes": included}
            if insert_new(conn, fleet_alerts, [row]).first() is not None:
                raised.append(row)
    return raised


def _crossed(subject: str, used: int, included: int) -> list[tuple]:
    return [(subject, t, used, included) for t in THRESHOLDS if used * 100 >= included * t]


def alerts(engine: Engine, month: str | None = None) -> list[dict]:
    a = fleet_alerts.c
    query = select(fleet_alerts).order_by(a.raised, a.subject, a.threshold)
    if month:
        query = query.where(a.month == month)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
