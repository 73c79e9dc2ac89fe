"""Runs every benchmark script in bench/, prints a table of figures, writes bench/results.json.

A benchmark script prints each figure it measures as one line:
    FIGURE <name> <value> <unit>
Anything else it prints is shown as it runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results.json"


def run_script(path: Path, console: Console) -> dict[str, dict]:
    figures = {}
    proc = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("FIGURE "):
            _, name, value, unit = line.split(maxsplit=3)
            figures[name] = {"value": float(value), "unit": unit.strip()}
        else:
            console.print(f"[dim]{path.name}:[/] {line.rstrip()}")
    if proc.wait() != 0:
        raise SystemExit(f"{path.name} failed with exit code {proc.returncode}")
    return figures


def main() -> None:
    console = Console()
    figures: dict[str, dict] = {}
    for script in sorted(BENCH_DIR.glob("*.py")):
        if script.name == Path(__file__).name or script.name.startswith("_"):
            continue
        figures.update(run_script(script, console))
    table = Table(title="musket benchmarks")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for name in sorted(figures):
        table.add_row(name, f"{figures[name]['value']:,.2f}", figures[name]["unit"])
    console.print(table)
    RESULTS.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    console.print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
