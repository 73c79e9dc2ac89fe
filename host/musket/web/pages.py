"""The four teams' pages and the two changes they make. Each page reads through the parts that
own the data (musket.fleet.views and plans, musket.services.views, musket.web.queries for
pages of long lists) and changes it only through their audited functions
(musket.fleet.sims.change_states, musket.services.views.set_order_state)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse

from musket.errors import MusketError
from musket.fleet import plans, sims, views
from musket.registry.core import Registry
from musket.services import views as services
from musket.services.orders import NEXT as ORDER_NEXT
from musket.web import charts, queries
from musket.web.app import current_user, render, require


def _page_number(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 1


def _slice(rows: list, page: int) -> queries.Page:
    """One page of a list a part's view returns whole."""
    per = queries.PER_PAGE
    pages = max(1, -(-len(rows) // per))
    page = min(page, pages)
    return queries.Page(rows[(page - 1) * per:page * per], page, pages, len(rows))


def _bulk(request: Request, user, page: str, change):
    """Makes a bulk SIM change (a musket.fleet.sims function) and goes back to the page saying
    what it did and what was refused; bad input is the refusal page (400)."""
    try:
        result = change()
    except MusketError as e:
        return render(request, "refused.html", {"user": user, "why": str(e)}, status_code=400)
    what = f"now on {result.state}" if result.action == "plan" else \
        f"now {result.state} ({result.action})"
    done = f"{len(result.changed)} SIMs {what}" + "".join(
        f"; {i} refused: {why}" for i, why in result.refused.items())
    return RedirectResponse(f"{page}?done={quote(done)}", status_code=303)


def _choice(value: str, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else allowed[0]


def register(app: FastAPI) -> None:  # noqa: C901 - one route per page, read top to bottom
    engine = app.state.engine

    @app.get("/engineering")
    def engineering(request: Request, page: str = "1", q: str = "", only: str = "all"):
        user = current_user(request)
        only = _choice(only, queries.DEVICE_FILTERS)
        return render(request, "engineering.html", {
            "user": user, "summary": queries.health_summary(engine), "only": only, "q": q,
            "filters": queries.DEVICE_FILTERS, "charts_src": "/charts/engineering",
            "devices": queries.devices_page(engine, _page_number(page), q.strip(), only)})

    @app.get("/engineering/device/{device_id}")
    def device(request: Request, device_id: str):
        user = current_user(request)
        detail = views.device_detail(engine, device_id)
        if detail is None:
            return render(request, "refused.html", {
                "user": user, "why": f"device {device_id} is not in the registry"},
                status_code=404)
        return render(request, "device.html", {
            "user": user, "d": detail,
            "tickets": [t for t in services.tickets(engine) if t["device_id"] == device_id]})

    @app.get("/operations")
    def operations(request: Request, page: str = "1", q: str = "", state: str = "all",
                   done: str = ""):
        user = current_user(request)
        state = _choice(state, queries.SIM_STATES_SHOWN)
        counts = queries.sim_states(engine)
        return render(request, "operations.html", {
            "user": user, "counts": counts, "state": state, "q": q,
            "factory": queries.factory_yield(engine) is not None,
            "states": queries.SIM_STATES_SHOWN, "actions": sims.ACTIONS, "done": done,
            "may_change": user.may("sims.lifecycle"), "charts_src": "/charts/operations",
            "sims": queries.sims_page(engine, _page_number(page), q.strip(), state),
            "audit": queries.recent_audit(engine, ("sim-state",))})

    @app.post("/operations/sims")
    async def change_sims(request: Request, action: str = Form(...), reason: str = Form(""),
                          csrf: str = Form("")):
        user = current_user(request)
        require(request, user, "sims.lifecycle", csrf)
        chosen = [str(i) for i in (await request.form()).getlist("iccid")]
        return _bulk(request, user, "/operations", lambda: sims.change_states(
            Registry(engine), chosen, action, reason, user.actor()))

    @app.get("/finance")
    def finance(request: Request, page: str = "1", q: str = "", period: str = "",
                done: str = ""):
        user = current_user(request)
        period = period if _is_period(period) else datetime.now(UTC).strftime("%Y-%m")
        sims_usage, pools = plans.month_usage(engine)
        chosen = [s.as_dict() for s in sims_usage if s.iccid.startswith(q.strip())]
        try:
            statements = services.statements(engine, period)
        except MusketError as e:
            statements, period = [], f"{period} ({e})"
        return render(request, "finance.html", {
            "user": user, "q": q, "period": period, "pools": pools,
            "by_plan": _by_plan(sims_usage), "plans": list(plans.plans(engine)),
            "may_change": user.may("sims.plan"), "done": done,
            "alerts": plans.alerts(engine, datetime.now(UTC).strftime("%Y-%m")),
            "sims": _slice(chosen, _page_number(page)),
            "totals": {"used": sum(s.used_bytes for s in sims_usage),
                       "forecast": sum(s.forecast_bytes for s in sims_usage),
                       "cost": sum(s.cost or 0 for s in sims_usage),
                       "forecast_cost": sum(s.forecast_cost or 0 for s in sims_usage
                                            if not s.pooled)
                       + sum(p["forecast_cost"] for p in pools),
                       "currency": next((s.currency for s in sims_usage if s.currency), "")},
            "statements": statements, "charts_src": "/charts/finance"})

    @app.post("/finance/plans")
    def change_plans(request: Request, iccids: str = Form(""), plan: str = Form(...),
                     reason: str = Form(""), csrf: str = Form("")):
        user = current_user(request)
        require(request, user, "sims.plan", csrf)
        chosen = list(dict.fromkeys(i for i in iccids.replace(",", " ").split() if i))
        return _bulk(request, user, "/finance", lambda: sims.change_plans(
            Registry(engine), chosen, plan, reason, user.actor()))

    @app.get("/customers")
    def customers(request: Request, customer: str = "", orders: str = "open",
                  page: str = "1"):
        user = current_user(request)
        chosen = customer or None
        shown = [o for o in services.orders(engine, chosen)
                 if orders == "all" or o["state"] != "installed"]
        open_tickets = services.tickets(engine, "open", chosen)
        return render(request, "customers.html", {
            "user": user, "customer": customer, "orders_shown": orders,
            "customers": services.customers(engine),
            "status": queries.status_by_customer(engine),
            "orders": _slice(shown, _page_number(page)),
            "open_tickets": open_tickets[:queries.PER_PAGE],
            "open_tickets_total": len(open_tickets),
            "closed_tickets": services.tickets(engine, "closed", chosen)[-10:],
            "may_change": user.may("orders.state"), "next_states": ORDER_NEXT,
            "audit": queries.recent_audit(engine, ("order-state",)),
            "charts_src": "/charts/customers" + (f"?customer={quote(customer)}"
                                                 if customer else "")})

    @app.get("/charts/{team}")
    def team_charts(request: Request, team: str, customer: str = ""):
        current_user(request)
        if team not in charts.TEAMS:
            return JSONResponse({"error": f"no page {team}"}, status_code=404)
        made = charts.TEAMS[team]
        return JSONResponse(made(engine, customer or None) if team == "customers"
                            else made(engine))

    @app.post("/customers/orders/{order_id}")
    def order_state(request: Request, order_id: int, state: str = Form(...),
                    csrf: str = Form("")):
        user = current_user(request)
        require(request, user, "orders.state", csrf)
        try:
            services.set_order_state(engine, order_id, state, user.actor())
        except MusketError as e:
            return render(request, "refused.html", {"user": user, "why": str(e)},
                          status_code=400)
        return RedirectResponse("/customers", status_code=303)


def _is_period(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y-%m")
    except ValueError:
        return False
    return True


def _by_plan(sims_usage) -> list[dict]:
    """month_usage's SIMs summed per plan: SIMs, data, forecast, cost, forecast cost."""
    out: dict[str, dict] = {}
    for s in sims_usage:
        row = out.setdefault(s.plan or "(none)", {
            "plan": s.plan or "(none)", "sims": 0, "used_bytes": 0, "forecast_bytes": 0,
            "cost": 0.0, "currency": s.currency or ""})
        row["sims"] += 1
        row["used_bytes"] += s.used_bytes
        row["forecast_bytes"] += s.forecast_bytes
        row["cost"] += s.cost or 0.0
    return sorted(out.values(), key=lambda r: r["plan"])
