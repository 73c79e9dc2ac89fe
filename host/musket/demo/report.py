"""Stage 4, the report: what the registry holds, each line checked against what the
simulation did (the units' modems, what provisioning was given, what the broker carried)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from musket.demo.checks import Check
from musket.demo.units import Unit
from musket.registry import Registry


def show(units: list[Unit], made, checks: list[Check], registry: Registry, workdir: Path,
         console: Console, seconds: float) -> dict:
    console.rule("report")
    table = Table(title="units")
    for column in ("unit", "board", "interpreter", "SIM (ICCID)", "provisioned",
                   "end-of-line"):
        table.add_column(column)
    for unit in units:
        test = made.eol.get(unit.name)
        table.add_row(unit.name, unit.spec.board, unit.spec.interpreter, unit.spec.iccid,
                      "yes" if unit.device_id else "[red]refused[/]",
                      ("passed" if test.passed else "failed") if test else "-")
    console.print(table)
    refused = [u for u in units if u.refused]
    for unit in refused:
        console.print(f"{unit.name} refused: {unit.refused}")
    checked = Table(title="checked against the simulation")
    checked.add_column("check")
    checked.add_column("result")
    checked.add_column("detail")
    for check in checks:
        checked.add_row(check.what, "[green]ok[/]" if check.ok else "[red]FAILED[/]",
                        check.detail)
    console.print(checked)
    ok = all(c.ok for c in checks)
    console.print(f"work folder (registry, broker, units' flash and console logs): {workdir}")
    console.print(f"{'all checks passed' if ok else 'SOME CHECKS FAILED'}")
    return {"ok": ok, "checks": [c.__dict__ for c in checks], "seconds": seconds,
            "units": {u.name: {"device_id": u.device_id, "refused": u.refused}
                      for u in units}}
