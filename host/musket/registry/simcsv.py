"""The connectivity vendor's SIM list: a CSV file with the columns ICCID, plan and state.

Every row is checked before anything is imported; one bad row and nothing is. Column names are
matched without regard to case or surrounding spaces, other columns are ignored, blank lines
are skipped, a UTF-8 byte-order mark is allowed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from musket.identity import IdentityError, check_iccid
from musket.registry.database import RegistryError

REQUIRED_COLUMNS = ("iccid", "plan", "state")
# A SIM enters the registry unbound: "bound" and "active" belong to SIMs in a device, and only
# provisioning puts a SIM in a device.
IMPORT_STATES = ("inventory", "suspended", "retired")
MAX_PLAN_LENGTH = 64
MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class SimRow:
    line: int
    iccid: str
    plan: str
    state: str


class SimImportError(RegistryError):
    """The file cannot be imported; `problems` lists every bad row as "line N: why"."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        text = "; ".join(shown) + (f"; and {more} more" if more else "")
        super().__init__(f"{source}: nothing imported, {len(problems)} bad "
                         f"row{'s' if len(problems) != 1 else ''}: {text}")


def read_rows(path: str | Path) -> list[SimRow]:
    """Checked rows of the file; raises SimImportError naming every bad row."""
    name = Path(path).name
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise RegistryError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise SimImportError(name, [f"byte {e.start}: not UTF-8 text"]) from None
    return parse(text, name)


def parse(text: str, source: str = "SIM list") -> list[SimRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise SimImportError(source, ["line 1: empty file (expected a header ICCID,plan,state)"])
    columns = [name.strip().lower() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise SimImportError(source, [f"line 1: missing column {', '.join(missing)} (found: "
                                      f"{', '.join(header) or 'nothing'})"])
    where = {name: columns.index(name) for name in REQUIRED_COLUMNS}
    rows: list[SimRow] = []
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            row, problem = _check(line, record, where)
            if row is None:
                problems.append(problem or f"line {line}: unreadable")
                continue
            if row.iccid in first_seen:
                problems.append(f"line {line}: ICCID {row.iccid} appears again (first on line "
                                f"{first_seen[row.iccid]})")
                continue
            first_seen[row.iccid] = line
            rows.append(row)
    except csv.Error as e:
        problems.append(f"line {reader.line_num}: {e}")
    if problems:
        raise SimImportError(source, problems)
    if not rows:
        raise SimImportError(source, ["no SIMs in the file (only a header)"])
    return rows


def _check(line: int, record: list[str], where: dict[str, int]
           ) -> tuple[SimRow | None, str | None]:
    if len(record) <= max(where.values()):
        return None, f"line {line}: {len(record)} columns, expected at least " \
                     f"{max(where.values()) + 1}"
    iccid_text = record[where["iccid"]]
    plan = record[where["plan"]].strip()
    state = record[where["state"]].strip().lower()
    try:
        iccid = check_iccid(iccid_text)
    except IdentityError as e:
        return None, f"line {line}: {e}"
    if not plan:
        return None, f"line {line}: ICCID {iccid}: empty plan"
    if len(plan) > MAX_PLAN_LENGTH:
        return None, f"line {line}: ICCID {iccid}: plan longer than {MAX_PLAN_LENGTH} characters"
    if state not in IMPORT_STATES:
        return None, (f"line {line}: ICCID {iccid}: state {state!r} cannot be imported "
                      f"(expected one of: {', '.join(IMPORT_STATES)})")
    return SimRow(line, iccid, plan, state), None
