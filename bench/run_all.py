"""Runs every benchmark script in bench/, prints a table of figures, writes bench/results.json.

A benchmark script prints each figure it measures as one line:
    FIGURE <name> <value> <unit>
Anything else it prints is shown as it runs.

A script that fails does not stop the run: the others still measure, the table shows every
figure that was printed, the failed scripts are named under it, and the exit code is 1.
bench/results.json is written after each script, so a run cut short keeps what it measured.
Ctrl-C or SIGTERM stops the script under way as Ctrl-C would (its servers stopped on the way
out) and ends the run with the table so far.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results.json"
STOP_WAIT_S = 120  # what a stopped script gets to stop its servers before it is killed


def run_script(path: Path, console: Console, figures: dict[str, dict]) -> int:
    """Runs one script, adding the figures it prints to `figures`; its exit code."""
    proc = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None  # stdout=PIPE
    try:
        for line in proc.stdout:
            if line.startswith("FIGURE "):
                _, name, value, unit = line.split(maxsplit=3)
                figures[name] = {"value": float(value), "unit": unit.strip()}
            else:
                console.print(f"[dim]{path.name}:[/] {line.rstrip()}")
        return proc.wait()
    except KeyboardInterrupt:
        # A Ctrl-C in the terminal reached the script as well; a SIGTERM to this process did
        # not, so the script is interrupted here as Ctrl-C would.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def print_table(console: Console, figures: dict[str, dict]) -> None:
    table = Table(title="musket benchmarks")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for name in sorted(figures):
        table.add_row(name, f"{figures[name]['value']:,.2f}", figures[name]["unit"])
    console.print(table)


def main() -> None:
    console = Console()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: KeyboardInterrupt
    figures: dict[str, dict] = {}
    failed: list[str] = []
    stopped = False
    try:
        for script in sorted(BENCH_DIR.glob("*.py")):
            if script.name == Path(__file__).name or script.name.startswith("_"):
                continue
            code = run_script(script, console, figures)
            if code != 0:
                failed.append(f"{script.name} (exit code {code})")
            RESULTS.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    except KeyboardInterrupt:
        stopped = True
    print_table(console, figures)
    RESULTS.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    console.print(f"written: {RESULTS}")
    for name in failed:
        console.print(f"[red]failed:[/] {name}")
    if stopped:
        console.print("[red]stopped before every script had run[/]")
    if failed or stopped:
        sys.exit(1)


if __name__ == "__main__":
    main()
