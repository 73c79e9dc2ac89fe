"""Stage 1, the factory: the line's own commands' library functions, in the line's order.

Builds once per board (a stand-in MicroPython release: the virtual chip runs the firmware,
not the release's machine code), flashes all six units at once with real esptool through
each unit's ROM loader (a process per unit, as each is a chip of its own), imports the
vendor's SIM list and the data plans, provisions each unit over its console (one is refused:
its SIM is bound to another unit), starts the broker with the registry's credentials, and
runs the end-of-line test on every provisioned unit.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from musket import build, eol, espimage, flash, parttable
from musket.boards import load_board
from musket.demo.units import Unit
from musket.errors import MusketError
from musket.fleet import plans
from musket.mosquitto import Mosquitto
from musket.ota.keys import KeyStore
from musket.provision import BrokerSettings, ProvisionOptions, provision
from musket.registry import Actor, Registry

APP_SIZE = 256 * 1024  # the stand-in release's app; a real one is ~1.6 MB and flashes slower
LOADER_BAUD = 921600
PROVISION_SPEED = "20"  # virtual s per wall s while the modem boots: the line waits less
EOL_SPEED = "20"
LINE = Actor("line-1", "demo")
EOL_STATION = Actor("eol-1", "demo")
# The line's settings on every unit's filesystem (provisioning adds its own keys and keeps
# these): a health status every half hour, so the fleet's view of each unit's data use is
# never more than half an hour old.
LINE_CONFIG = build.DeviceData("line", {"health_interval_s": 1800}, {})
SERVICE_USERS = ("fleet", "eol", "console", "ota")
PLANS_TOML = """\
[plans.iot-eu-10mb]
monthly_fee = 1.50
included_mb = 10
overage_per_mb = 0.40
pooled = false
currency = "EUR"
"""


@dataclass
class FactoryResult:
    builds: dict[str, dict] = field(default_factory=dict)  # board -> manifest
    flashed: dict[str, flash.PortResult] = field(default_factory=dict)  # unit -> result
    sims_imported: int = 0
    plans: list[str] = field(default_factory=list)
    provisioned: dict[str, str] = field(default_factory=dict)  # unit -> device ID
    refused: dict[str, str] = field(default_factory=dict)  # unit -> why
    eol: dict[str, eol.EolResult] = field(default_factory=dict)  # unit -> result


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("  {task.description:<28}"), BarColumn(),
                    TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=console)


def build_boards(units: list[Unit], workdir: Path, keys: KeyStore, console: Console
                 ) -> dict[str, Path]:
    """One build per board, its units trusting the line's update keys; returns board ->
    build folder."""
    folders: dict[str, Path] = {}
    boards = sorted({u.spec.board for u in units})
    with _progress(console) as bars:
        for name in boards:
            task = bars.add_task(f"build {name}", total=1, state="compiling")
            board = load_board(name)
            release = workdir / "releases" / f"micropython-{board.chip}.bin"
            release.parent.mkdir(parents=True, exist_ok=True)
            release.write_bytes(espimage.stand_in_release(
                board.chip, parttable.encode(board.partitions(False)), APP_SIZE))
            folders[name] = workdir / "build" / name
            result = build.build(board, release, folders[name], device=LINE_CONFIG,
                                 trusted_keys=keys.device_file())
            size = sum(p["size"] for p in result.manifest["pieces"]
                       if p["name"] != "flash.bin")
            bars.update(task, completed=1, state=f"{size:,} bytes in "
                                                 f"{len(result.manifest['pieces'])} pieces")
    return folders


def flash_all(units: list[Unit], builds: dict[str, Path], console: Console
              ) -> dict[str, flash.PortResult]:
    """Every unit at once, each from erased flash through its own ROM loader."""
    from musket_sim.station import LoaderProcess

    loaders = {}
    try:
        for unit in units:
            unit.image.write_bytes(b"\xff" * unit.board.flash_size)
            loaders[unit.name] = LoaderProcess(unit.image, unit.board.chip, unit.mac)
        ports = {unit.name: loaders[unit.name].url for unit in units}
        results: dict[str, flash.PortResult] = {}
        with _progress(console) as bars:
            tasks = {ports[u.name]: bars.add_task(f"flash {u.name} ({u.spec.board})",
                                                  total=None, state="connecting")
                     for u in units}

            def on_progress(port: str, done: int, total: int, stage: str) -> None:
                bars.update(tasks[port], completed=done, total=total or None, state=stage)

            def work(unit: Unit) -> None:
                plan = flash.Plan.load(builds[unit.spec.board])
                results[unit.name] = flash.flash_port(ports[unit.name], plan,
                                                      baud=LOADER_BAUD,
                                                      on_progress=on_progress)
                bars.update(tasks[ports[unit.name]],
                            state="done" if results[unit.name].ok else "FAILED")

            _each(units, work)
    finally:
        for loader in loaders.values():
            loader.unplug()
        for loader in loaders.values():
            loader.pull()
    return results


def import_sims_and_plans(units: list[Unit], registry: Registry, workdir: Path
                          ) -> tuple[int, list[str]]:
    """The vendor's SIM list (each distinct ICCID once) and the plan they are on."""
    sims_csv = workdir / "sims.csv"
    iccids = sorted({u.spec.iccid for u in units})
    sims_csv.write_text("ICCID,plan,state\n" + "".join(f"{i},iot-eu-10mb,inventory\n"
                                                      for i in iccids))
    summary = registry.import_sims(sims_csv, LINE)
    plans_toml = workdir / "plans.toml"
    plans_toml.write_text(PLANS_TOML)
    imported = plans.import_plans(registry.engine, plans_toml)
    return summary.count, [p.name for p in imported]


def provision_all(units: list[Unit], registry: Registry, broker_port: int, console: Console
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """Each unit over its console, at once; a refusal is the unit's result, not an error."""
    settings = BrokerSettings("127.0.0.1", port=broker_port, tls=False)
    provisioned: dict[str, str] = {}
    refused: dict[str, str] = {}
    with _progress(console) as bars:
        tasks = {u.name: bars.add_task(f"provision {u.name}", total=2, state="booting")
                 for u in units}
        try:
            _each(units, lambda u: u.power_on(speed=PROVISION_SPEED, span="2h"))
            # One unit after the other, in line order, as a station does: so the unit whose
            # SIM another unit already holds is the same one in every run.
            for unit in units:
                bars.update(tasks[unit.name], completed=1, state="reading its modem")
                try:
                    # Drawn from the unit's seed: the same units get the same IDs every run.
                    ids = random.Random(f"demo-{unit.spec.seed}")
                    result = provision(unit.console, registry, settings, LINE,
                                       ProvisionOptions(reset=False, id_choice=ids.choice))
                except MusketError as e:
                    refused[unit.name] = unit.refused = str(e)
                    bars.update(tasks[unit.name], completed=2, state="REFUSED")
                    continue
                provisioned[unit.name] = unit.device_id = result.device_id
                bars.update(tasks[unit.name], completed=2, state=result.device_id)
        finally:
            _each(units, Unit.power_off)
    return provisioned, refused


def _each(units: list[Unit], action) -> None:
    """`action(unit)` for every unit at once; the first error is raised after all ended."""
    errors: list[BaseException] = []

    def work(unit: Unit) -> None:
        try:
            action(unit)
        except Exception as e:  # noqa: BLE001 - raised below, once every unit is done
            errors.append(e)

    threads = [threading.Thread(target=work, args=(u,)) for u in units]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:
        # Ctrl-C (or SIGTERM) while the units work: each unit's run ends and no other begins,
        # so each thread's work ends soon, and nothing is left running behind the clean-up.
        for unit in units:
            unit.cancel()
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]


def end_of_line(units: list[Unit], registry: Registry, watch: eol.BrokerWatch,
                console: Console) -> dict[str, eol.EolResult]:
    """The end-of-line test on every provisioned unit, at once, against the real broker."""
    results: dict[str, eol.EolResult] = {}
    with _progress(console) as bars:
        tasks = {u.name: bars.add_task(f"end-of-line {u.name}", total=2, state="booting")
                 for u in units}

        def test(unit: Unit) -> None:
            try:
                port = unit.power_on(speed=EOL_SPEED, span="2h", usage="day")
                bars.update(tasks[unit.name], completed=1, state="online, selftest, telemetry")
                results[unit.name] = result = eol.verify(port, registry, EOL_STATION, watch)
                bars.update(tasks[unit.name], completed=2,
                            state="passed" if result.passed else
                            "FAILED " + ", ".join(result.codes))
            finally:
                unit.power_off()

        _each(units, test)
    return results


def run(units: list[Unit], registry: Registry, mosquitto: Mosquitto, service_passwords: dict,
        keys: KeyStore, workdir: Path, console: Console) -> FactoryResult:
    result = FactoryResult()
    builds = build_boards(units, workdir, keys, console)
    result.builds = {b: str(f) for b, f in builds.items()}
    result.flashed = flash_all(units, builds, console)
    failed = [f"{name}: {r.error}" for name, r in result.flashed.items() if not r.ok]
    if failed:
        raise MusketError("flash failed: " + "; ".join(failed))
    result.sims_imported, result.plans = import_sims_and_plans(units, registry, workdir)
    result.provisioned, result.refused = provision_all(units, registry, mosquitto.port, console)
    mosquitto.start(registry.broker_users(), service_passwords)
    watch = eol.BrokerWatch("127.0.0.1", mosquitto.port, "eol", service_passwords["eol"])
    good = [u for u in units if u.device_id]
    result.eol = end_of_line(good, registry, watch, console)
    return result
