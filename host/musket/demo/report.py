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


def show(units: list[Unit], made, acted, sims: list, checks: list[Check], registry: Registry,
         workdir: Path, console: Console, seconds: float) -> dict:
    console.rule("4. report")
    console.print(_table("the fleet", (
        "unit", "board", "customer", "end-of-line", "brews", "litres", "data (device/air)"), [
        (u.name, u.spec.board, u.spec.customer,
         ("passed" if made.eol[u.name].passed else "failed") if u.name in made.eol
         else "refused",
         u.counted[0] if u.counted else "-", f"{u.counted[1]:.3f}" if u.counted else "-",
         f"{u.data[0]:,} / {u.data[1]:,} B" if u.data else "-") for u in units]))
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
    console.print(_table("tickets", ("ticket", "unit", "codes", "parts", "location"), [
        (t["ticket_id"], _name(units, t["device_id"]), ", ".join(t["codes"]),
         "; ".join(t["parts"]), t["location"]) for t in acted.tickets]))
    console.print(_table(f"statements {acted.period}", ("customer", "brews", "total"), [
        (s["customer_id"], sum(line["quantity"] for line in s["lines"]),
         f"{s['total']} {s['currency']}") for s in acted.statements]))
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
            "units": {u.name: {"device_id": u.device_id, "refused": u.refused,
                               "counted": list(u.counted), "data": list(u.data)}
                      for u in units}}


def _name(units: list[Unit], device_id: str) -> str:
    return next((u.name for u in units if u.device_id == device_id), device_id)
