"""Stage 2, the field: the fleet service takes what the units publish while each lives a
virtual day at full speed, each with its own trouble: one drives through a coverage gap, one
has its modem hang (the escalation ladder must bring it back), one has its temperature
sensor unplugged; the others have an ordinary day.

Each unit's day is a `musket sim run` of its own flash image under MicroPython (the
firmware's counters, journal and credentials carry on from the factory); the fleet service
is `musket fleet serve` against the same broker and registry.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from musket.demo.units import Unit
from musket.errors import MusketError

DAY_S = 86400
HOUR = 3600
SERVE_START_TIMEOUT_S = 30
DAY_TIMEOUT_S = 240  # a unit's day takes ~10 s of wall time; a stuck one fails the stage
# Each unit's trouble: (what the report calls it, the modem scenario, the usage scenario).
TROUBLE = {
    "unit-2": ("a coverage gap 09:00-11:00", {"events": [
        {"at": 9 * HOUR, "coverage": False}, {"at": 11 * HOUR, "coverage": True}]}, {}),
    "unit-3": ("its modem hangs at 10:00", {"events": [{"at": 10 * HOUR, "hang": True}]}, {}),
    "unit-4": ("temperature sensor unplugged at 08:00", {}, {"faults": [
        {"at": 8 * HOUR, "for": 16 * HOUR, "sensor": "sht", "kind": "nack"}]}),
}
ORDINARY = ("an ordinary day", {}, {})


@dataclass
class FieldResult:
    day_s: int
    trouble: dict[str, str] = field(default_factory=dict)  # unit -> what happened to it
    usage: dict[str, dict] = field(default_factory=dict)  # unit -> usage scenario played
    wall_seconds: float = 0.0


class FleetService:
    """`musket fleet serve` as the operator starts it, its log in the work folder."""

    def __init__(self, registry_path: Path, broker_port: int, password: str, folder: Path):
        self.log_path = folder / "fleet-serve.log"
        env = dict(os.environ, MUSKET_FLEET_DEMO_PASSWORD=password)
        with open(self.log_path, "ab") as log:
            start = log.tell()  # the service started again appends: this run's lines
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("musket")), "fleet", "serve",
                 "--registry", str(registry_path), "--broker", f"127.0.0.1:{broker_port}",
                 "--user", "fleet", "--password-env", "MUSKET_FLEET_DEMO_PASSWORD"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while b"subscribed" not in self._log_since(start):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise MusketError("the fleet service did not start: "
                                  + self._log_since(start)[-400:].decode(errors="replace"))
            time.sleep(0.05)

    def _log_since(self, offset: int) -> bytes:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def live_a_day(units: list[Unit], console: Console) -> FieldResult:
    """Every provisioned unit lives one virtual day at once; returns what each went through."""
    import json

    result = FieldResult(day_s=DAY_S)
    started = time.monotonic()
    with Progress(TextColumn("  {task.description:<44}"), BarColumn(),
                  TextColumn("{task.fields[state]}"), console=console) as bars:
        tasks = {}
        for unit in units:
            what, scenario, usage = TROUBLE.get(unit.name, ORDINARY)
            result.trouble[unit.name] = what
            result.usage[unit.name] = usage
            usage_file = unit.folder / "usage.json"
            usage_file.write_text(json.dumps(usage))
            unit.live(span="1d", scenario=unit.scenario_file(scenario, "field-scenario"),
                      usage=str(usage_file),
                      extra=("--carrier-csv", str(unit.folder / "carrier.csv")))
            tasks[unit.name] = bars.add_task(f"{unit.name}: {what}", total=DAY_S,
                                             state="day 1")
        deadline = time.monotonic() + DAY_TIMEOUT_S
        while True:
            running = [u for u in units if u.proc is not None and u.proc.poll() is None]
            for unit in units:
                at = DAY_S if unit not in running else min(unit.virtual_now(), DAY_S)
                bars.update(tasks[unit.name], completed=at,
                            state=f"{int(at // HOUR):02d}:{int(at % HOUR // 60):02d}")
            if not running:
                break
            if time.monotonic() > deadline:
                raise MusketError("a unit's day did not end in time: "
                                  + ", ".join(u.name for u in running))
            time.sleep(0.2)
    for unit in units:
        unit.power_off()  # keeps each day's summary
    result.wall_seconds = time.monotonic() - started
    return result


def import_carrier_usage(units: list[Unit], registry) -> int:
    """The carrier's usage file for the day (each unit's modem model's billed air bytes, as
    `musket sim run --carrier-csv` writes it), imported as finance would; returns its rows."""
    from musket.fleet.usage import import_carrier

    rows = 0
    for unit in units:
        rows += import_carrier(registry.engine, unit.folder / "carrier.csv").rows
    return rows
