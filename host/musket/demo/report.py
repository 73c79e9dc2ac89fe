"""Stage 4, the report: the fleet, data and cost per SIM, orders, tickets, statements, each
line's check against the simulation (musket.demo.checks), and where to look next."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from musket.demo.checks import Check
from musket.demo.units import Unit
from musket.registry import Registry


def _table(title: str, columns: tuple[str, ...], rows: list[tuple]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


def show(units: list[Unit], made, acted, updated, sims: list, checks: list[Check],
         registry: Registry, workdir: Path, console: Console, seconds: float) -> dict:
    from musket.fleet import views

    console.rule("4. report")
    firmware = {u.name: (views.device_detail(registry.engine, u.device_id) or {}).get("firmware")
                for u in units if u.device_id}
    console.print(_table("the fleet", (
        "unit", "board", "customer", "end-of-line", "brews", "litres", "data (device/air)",
        "firmware"), [
        (u.name, u.spec.board, u.spec.customer,
         ("passed" if made.eol[u.name].passed else "failed") if u.name in made.eol
         else "refused",
         u.counted[0] if u.counted else "-", f"{u.counted[1]:.3f}" if u.counted else "-",
         f"{u.data[0]:,} / {u.data[1]:,} B" if u.data else "-",
         firmware.get(u.name) or "-") for u in units]))
    for unit in units:
        if unit.refused:
            console.print(f"{unit.name} refused at provisioning: {unit.refused}")
    console.print(_table("data and cost per SIM this month", (
        "SIM (ICCID)", "unit", "plan", "device", "carrier", "cost", "month forecast"), [
        (s.iccid, next((u.name for u in units if u.device_id and u.spec.iccid == s.iccid),
                       "-"), s.plan, f"{s.used_bytes:,} B",
         f"{s.carrier_bytes:,} B" if s.carrier_bytes is not None else "-",
         f"{s.cost:.2f} {s.currency}", f"{s.forecast_cost:.2f} {s.currency}")
        for s in sims]))
    console.print(_table("orders", ("order", "unit", "consumable", "state", "placed",
                                    "run-out predicted"), [
        (o["order_id"], _name(units, o["device_id"]), o["consumable"], o["state"],
         o["placed"][:16], (o["runout_predicted"] or "")[:16]) for o in acted.orders]))
    console.print(_table("tickets", ("ticket", "unit", "codes", "parts", "location",
                                     "closed"), [
        (t["ticket_id"], _name(units, t["device_id"]), ", ".join(t["codes"]),
         "; ".join(t["parts"]), t["location"], (t["closed"] or "open")[:16])
        for t in acted.tickets]))
    console.print(_table(f"statements {acted.period}", ("customer", "brews", "total"), [
        (s["customer_id"], sum(line["quantity"] for line in s["lines"]),
         f"{s['total']} {s['currency']}") for s in acted.statements]))
    console.print(_table("update campaigns", (
        "campaign", "release", "bundle", "stages", "result", "units"), [
        (name, c["version"], f"{updated.bundles[c['version']]['kind']} "
                             f"{updated.bundles[c['version']]['bytes']:,} B",
         ",".join(c["stages"]), c["state"] + (f": {c['reason']}" if c["reason"] else ""),
         _unit_states(units, c["devices"])) for name, c in updated.campaigns.items()]))
    console.print(_table("checked against the simulation", ("check", "result", "detail"), [
        (c.what, "[green]ok[/]" if c.ok else "[red]FAILED[/]", c.detail) for c in checks]))
    ok = all(c.ok for c in checks)
    console.print(f"work folder (registry, broker, rules, units' flash and console logs): "
                  f"{workdir}")
    from musket.cli_web import DEFAULT_PORT

    registry_file = workdir / "registry.sqlite"
    console.print(f"the team pages: musket fleet web user add YOU --role engineering "
                  f"--registry {registry_file}, then musket fleet web --registry "
                  f"{registry_file} and open http://127.0.0.1:{DEFAULT_PORT}/")
    console.print(f"{sum(c.ok for c in checks)} of {len(checks)} checks passed"
                  + ("" if ok else ": [red]SOME CHECKS FAILED[/]"))
    return {"ok": ok, "checks": [c.__dict__ for c in checks], "seconds": seconds,
            "campaigns": {name: {"state": c["state"], "reason": c["reason"],
                                 "units": {_name(units, d["device_id"]): d["state"]
                                           for d in c["devices"]}}
                          for name, c in updated.campaigns.items()},
            "orders": [{"unit": _name(units, o["device_id"]), "consumable": o["consumable"],
                        "state": o["state"], "placed": o["placed"],
                        "runout_predicted": o["runout_predicted"]} for o in acted.orders],
            "tickets": [{"unit": _name(units, t["device_id"]), "codes": t["codes"],
                         "closed": t["closed"]} for t in acted.tickets],
            "statements": [{"customer": s["customer_id"], "total": s["total"]}
                           for s in acted.statements],
            "units": {u.name: {"device_id": u.device_id, "refused": u.refused,
                               "counted": list(u.counted), "data": list(u.data),
                               "firmware": firmware.get(u.name)}
                      for u in units}}


def _unit_states(units: list[Unit], devices: list[dict]) -> str:
    """"unit-1 rolled_back; 4 skipped": each state once, with its units when few."""
    by_state: dict[str, list[str]] = {}
    for d in devices:
        by_state.setdefault(d["state"], []).append(_name(units, d["device_id"]))
    return "; ".join(f"{', '.join(names)} {state}" if len(names) <= 2
                     else f"{len(names)} {state}" for state, names in by_state.items())


def _name(units: list[Unit], device_id: str) -> str:
    return next((u.name for u in units if u.device_id == device_id), device_id)
