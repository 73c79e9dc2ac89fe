"""The device's diagnosis table, read from the firmware's own module (firmware/app/diagnoses.py)
with `ast.literal_eval`, so the host and the device share one table and neither keeps a copy.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from musket.firmware import firmware_dir

TABLE_MODULE = "app/diagnoses.py"  # under the firmware tree


@dataclass(frozen=True)
class Diagnosis:
    code: str
    problem: str
    repair: str
    parts: str


def load(path: Path | None = None) -> list[Diagnosis]:
    """The rows of the table, in the firmware's order."""
    path = path or firmware_dir() / TABLE_MODULE
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "TABLE" for t in node.targets):
            return [Diagnosis(*row) for row in ast.literal_eval(node.value)]
    raise ValueError(f"{path}: no TABLE")


def find(code: str, rows: list[Diagnosis] | None = None) -> Diagnosis | None:
    """The row of a device's code ("NET_NOCOV:15" finds NET_NOCOV), or None."""
    base = code.split(":")[0]
    for row in rows if rows is not None else load():
        if row.code == base:
            return row
    return None
