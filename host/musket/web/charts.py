"""The plots of each team's page, as data: {name: {title, kind, x, series}} for
templates/charts.js to draw with plotly. A page's HTML comes first and its plots' data after,
from /charts/<team> (the per-day counts are the page's costliest queries, so what people read
is painted without waiting for them)."""

from __future__ import annotations

from sqlalchemy import Engine

from musket.services import views as services
from musket.web import queries


def engineering(engine: Engine) -> dict:
    sessions = queries.sessions_per_day(engine)
    uses = queries.uses_per_day(engine)
    reasons = queries.health_summary(engine)["reboot_reasons"]
    return {
        "sessions": {"title": "Connections opened per day", "kind": "bar",
                     "x": sessions["days"], "series": {"sessions": sessions["sessions"]}},
        "uses": {"title": "Counted uses per day", "kind": "line", "x": uses["days"],
                 "series": uses["counters"]},
        "reboots": _bar_map("Reboot reasons (all devices)", reasons),
    }


def operations(engine: Engine) -> dict:
    out = {"states": _bar_map("SIMs by state", queries.sim_states(engine))}
    factory = queries.factory_yield(engine)
    if factory:
        out["factory"] = {"title": f"End-of-line tests per day (yield {factory['yield']} %)",
                          "kind": "bar", "x": factory["days"],
                          "series": {"tested": factory["tested"], "passed": factory["passed"]}}
    return out


def finance(engine: Engine) -> dict:
    data = queries.data_per_day(engine)
    return {"data": {"title": "Data per day (MB), last 30 days", "kind": "bar",
                     "x": data["days"],
                     "series": {"devices": [b / 1e6 for b in data["device_bytes"]],
                                "carrier": [None if b is None else b / 1e6
                                            for b in data["carrier_bytes"]]}}}


def customers(engine: Engine, customer_id: str | None = None) -> dict:
    orders = queries.per_day([o["placed"] for o in services.orders(engine, customer_id)])
    tickets = queries.per_day([t["opened"] for t in services.tickets(
        engine, customer_id=customer_id)])
    return {"orders": {"title": "Orders placed and tickets opened per day", "kind": "bar",
                       "x": orders["days"], "series": {"orders placed": orders["counts"],
                                                       "tickets opened": tickets["counts"]}}}


TEAMS = {"engineering": engineering, "operations": operations, "finance": finance,
         "customers": customers}


def _bar_map(title: str, values: dict) -> dict:
    return {"title": title, "kind": "bar", "x": list(values),
            "series": {"": list(values.values())}}
