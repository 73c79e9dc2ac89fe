"""The carrier's side of a virtual device's data: its usage file, per SIM per day, from the
air bytes the modem model counted (the modem's figures, "billed"), as the carrier would bill
them. `musket fleet carrier-import` reads the same format: a header ``iccid,day,bytes``."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable

HEADER = ("iccid", "day", "bytes")


def billed_rows(modem_figures: Iterable[dict]) -> list[tuple[str, str, int]]:
    """(iccid, day, bytes) rows from one or more runs' modem figures (RunResult.modem), the
    same SIM and day added up, in ICCID and day order."""
    total: dict[tuple[str, str], int] = {}
    for figures in modem_figures:
        for iccid, days in (figures.get("billed") or {}).items():
            for day, n in days.items():
                total[(iccid, day)] = total.get((iccid, day), 0) + int(n)
    return [(iccid, day, n) for (iccid, day), n in sorted(total.items())]


def write_usage_csv(path: str | os.PathLike[str], rows: Iterable[tuple[str, str, int]]) -> int:
    """Writes the carrier's usage file; returns the number of rows."""
    rows = list(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    return len(rows)
