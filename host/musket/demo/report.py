"""Stage 4, the report: what the registry holds, each line checked against what the
simulation did (the units' modems, what provisioning was given, what the broker carried)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from musket.demo.units import Unit
from musket.registry import Registry


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str


def check_factory(units: list[Unit], made, registry: Registry) -> list[Check]:
    """The factory's results against the fleet as it was made: every unit flashed; every unit
    whose SIM was free bound to its own modem's ICCID and IMEI; the unit whose SIM another
    unit holds refused for that reason; every provisioned unit passed its end-of-line test."""
    checks = []
    flashed = [n for n, r in made.flashed.items() if r.ok]
    checks.append(Check("flashed with esptool", len(flashed) == len(units),
                        f"{len(flashed)} of {len(units)}"))
    first_holder: dict[str, str] = {}
    for unit in units:
        first_holder.setdefault(unit.spec.iccid, unit.name)
    for unit in units:
        holder = first_holder[unit.spec.iccid]
        if holder == unit.name:
            device = registry.device(unit.device_id) if unit.device_id else None
            ok = (device is not None and device.iccid == unit.spec.iccid
                  and device.imei == unit.spec.imei and device.sim_state == "bound")
            checks.append(Check(f"{unit.name} bound to its SIM and modem", ok,
                                f"{unit.device_id}: ICCID {unit.spec.iccid}, "
                                f"IMEI {unit.spec.imei}" if ok else str(unit.refused)))
        else:
            reason = unit.refused or ""
            ok = unit.device_id is None and unit.spec.iccid in reason
            checks.append(Check(f"{unit.name} refused: its SIM is in {holder}", ok,
                                reason.split("\n")[0][:160]))
    for name, result in sorted(made.eol.items()):
        checks.append(Check(f"{name} end-of-line", result.passed,
                            "passed" if result.passed else ", ".join(result.codes)))
    return checks


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
