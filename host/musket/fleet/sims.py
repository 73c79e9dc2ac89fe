"""SIM lifecycle in bulk: pause, resume or deactivate many SIMs with one reason, or move them to
another plan. Each SIM goes
through the registry's own state change (musket.registry.Registry.set_sim_state: its rules and
its audit row), in a transaction of its own, so one refused SIM does not hold back the rest and
every change that was made has its audit row."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sqlalchemy import select, update

from musket.errors import BadInput, MusketError
from musket.identity import IdentityError, check_iccid

# What each bulk action asks of the registry's SIM states.
ACTIONS = {"pause": "suspended", "resume": "active", "deactivate": "retired"}


class SimListError(BadInput):
    """A list of SIMs that cannot be used: unreadable, or a line that is not an ICCID."""


@dataclass
class BulkResult:
    action: str
    state: str
    changed: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # ICCID -> why

    def as_dict(self) -> dict:
        return {"action": self.action, "state": self.state, "changed": self.changed,
                "refused": self.refused}


def read_iccids(path: str | os.PathLike[str]) -> list[str]:
    """ICCIDs from a file: one a line, or the first column of a CSV (a header line whose first
    field is not an ICCID is skipped); blank lines and '#' comments are ignored. Every bad
    line is named; nothing is changed when there is one."""
    try:
        lines = open(path, encoding="utf-8-sig").read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SimListError(f"{path}: cannot read: {e}") from None
    out, problems = [], []
    for n, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].split(",", 1)[0].strip()
        if not text or (n == 1 and not text[0].isdigit()):
            continue
        try:
            out.append(check_iccid(text))
        except IdentityError as e:
            problems.append(f"line {n}: {e}")
    if problems:
        raise SimListError(f"{path}: " + "; ".join(problems[:20]))
    return list(dict.fromkeys(out))


def change_states(registry, iccids: list[str], action: str, reason: str, actor) -> BulkResult:
    """Moves each SIM to the action's state; one audit row per SIM changed."""
    if action not in ACTIONS:
        raise BadInput(f"unknown action {action!r} (one of: {', '.join(ACTIONS)})")
    if not reason or not reason.strip():
        raise BadInput("a reason is required for a SIM state change (--reason)")
    if not iccids:
        raise BadInput("no SIMs given (--file or --iccid)")
    result = BulkResult(action, ACTIONS[action])
    for iccid in iccids:
        try:
            registry.set_sim_state(iccid, ACTIONS[action], f"{action}: {reason.strip()}",
                                   actor)
            result.changed.append(iccid)
        except MusketError as e:
            result.refused[iccid] = str(e)
    return result


def change_plans(registry, iccids: list[str], plan: str, reason: str, actor) -> BulkResult:
    """Puts each SIM on `plan` (one of the stored plans, musket.fleet.plans), each in a
    transaction of its own with one audit row; a retired or unknown SIM is refused."""
    from musket.fleet import plans
    from musket.registry.core import now, record_audit
    from musket.registry.schema import sims

    known = plans.plans(registry.engine)
    if plan not in known:
        raise BadInput(f"unknown plan {plan!r} (one of: {', '.join(known) or 'none stored'})")
    if not reason or not reason.strip():
        raise BadInput("a reason is required for a plan change")
    if not iccids:
        raise BadInput("no SIMs given")
    result = BulkResult("plan", plan)
    for iccid in iccids:
        with registry.transaction() as conn:
            row = conn.execute(select(sims.c.plan, sims.c.state)
                               .where(sims.c.iccid == iccid)).first()
            if row is None or row.state == "retired":
                result.refused[iccid] = "not in the registry" if row is None else "retired"
                continue
            conn.execute(update(sims).where(sims.c.iccid == iccid)
                         .values(plan=plan, updated=now()))
            record_audit(conn, actor, "sim-plan", iccid,
                         {"plan": [row.plan, plan], "reason": reason.strip()})
        result.changed.append(iccid)
    return result
