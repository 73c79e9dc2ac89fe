"""The carrier's side of a virtual device's data.

- Its usage file, per SIM per day, from the air bytes the modem model counted (the modem's
  figures, "billed"), as the carrier would bill them. `musket fleet carrier-import` reads the
  same format: a header ``iccid,day,bytes``.
- Its SIM states: a JSON file {iccid: state} that `musket fleet sims pause|resume|deactivate
  --carrier-states FILE` writes, as a carrier's API takes a SIM state change, and that the
  modem model reads (scenario "carrier_states"): a SIM that is not "active" gets no data.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping

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


# The states in which the carrier carries a SIM's data; any other (suspended, retired) stops it.
DATA_FLOWS = ("active",)


class CarrierStatesError(ValueError):
    """The carrier's SIM-state file cannot be read (not JSON, or not {iccid: state})."""


def read_states(path: str | os.PathLike[str]) -> dict[str, str]:
    """The carrier's SIM states; a missing file is no state at all (every SIM as issued)."""
    try:
        raw = json.loads(open(path, encoding="utf-8").read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CarrierStatesError(f"{path}: cannot read the carrier's SIM states: {e}") from None
    if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise CarrierStatesError(f"{path}: expected {{iccid: state}}")
    return raw


def write_states(path: str | os.PathLike[str], changes: Mapping[str, str]) -> None:
    """Records SIM state changes in the carrier's file, atomically (a reader sees the states
    before or after, never half a file)."""
    states = read_states(path)
    states.update(changes)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(states, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
