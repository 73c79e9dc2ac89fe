"""Stage 3, updates: two signed releases rolled out to the fleet in stages, a canary first.

Release 1.1.0 is a one-line change (its boot line names the release), shipped as a delta
against the image the units were flashed with; every unit takes it, installs it at its next
boot and confirms it once its counters opened and the broker acknowledged its session.
Release 1.2.0, a delta against 1.1.0, cannot start (it imports a module its image lacks): the
canary fails every boot of its trial, its boot stage brings 1.1.0 back, and the campaign
aborts before any other unit is offered it. The keys are the line's: the units were built
trusting them (stage 1).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from musket import firmware
from musket.demo.units import Unit
from musket.ota import campaign, image, release
from musket.ota.keys import KeyStore
from musket.ota.transfer import FINAL_STATES, STATES, BundleServer

GOOD, BAD = "1.1.0", "1.2.0"
STAGES = ["1", "100%"]  # a canary, then everyone
ABORT_AFTER = 0  # one failure in a stage aborts the campaign
SPEED = "60"  # virtual s per wall s: a unit waiting for its offer does not race its day away
STAGE_TIMEOUT_S = 150
BOOT_LINE = '"boot #%d, reset cause %s, board %s"'
INTERPRETER = "micropython"


def campaign_name(version: str) -> str:
    return "release-" + version.replace(".", "-")


@dataclass
class UpdateResult:
    bundles: dict[str, dict] = field(default_factory=dict)  # version -> kind, bytes, full bytes
    campaigns: dict[str, dict] = field(default_factory=dict)  # name -> CampaignStore.get
    served: dict[str, dict] = field(default_factory=dict)  # campaign -> device -> bytes, resent


def release_tree(folder: Path, version: str, *, breaking: bool = False) -> Path:
    """A copy of firmware/ whose boot line names `version`; `breaking`: it also imports a
    module the image does not hold, so it fails as it starts."""
    tree = folder / f"firmware-{version}"
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(firmware.firmware_dir(), tree, ignore=shutil.ignore_patterns("__pycache__"))
    main = tree / "app" / "main.py"
    text = main.read_text()
    if BOOT_LINE not in text:
        raise RuntimeError("app/main.py's boot line changed: update musket.demo.update")
    text = text.replace(BOOT_LINE, BOOT_LINE[:-1] + f', release {version}"', 1)
    if breaking:
        text += "\nimport app.part_left_out  # noqa: the release's bug\n"
    main.write_text(text)
    return tree


def build_releases(keys: KeyStore, boards: list[str], folder: Path,
                   cache_dir: Path | None = None) -> tuple[release.Release, release.Release,
                                                           dict[str, dict]]:
    """(1.1.0 as a delta against the factory image, 1.2.0 as a delta against 1.1.0, what
    each weighs beside its full bundle)."""
    factory = image.application_image(INTERPRETER, cache_dir=cache_dir)
    sizes: dict[str, dict] = {}
    made = []
    base = release.Base(factory.data)
    for version, breaking in ((GOOD, False), (BAD, True)):
        tree = release_tree(folder, version, breaking=breaking)
        full = release.build_release(keys, version=version, boards=boards,
                                     interpreter=INTERPRETER, firmware_root=tree,
                                     cache_dir=cache_dir)
        delta = release.build_release(keys, version=version, boards=boards,
                                      interpreter=INTERPRETER, firmware_root=tree, base=base,
                                      cache_dir=cache_dir)
        (folder / f"app-{version}.mkot").write_bytes(delta.data)
        sizes[version] = {"kind": delta.manifest["kind"], "bytes": len(delta.data),
                          "full_bytes": len(full.data)}
        made.append(delta)
        base = release.Base(image.application_image(INTERPRETER, tree, cache_dir).data, version,
                            INTERPRETER, full.manifest["files"])
    return made[0], made[1], sizes


def roll_out(units: list[Unit], registry, broker_port: int, password: str, keys: KeyStore,
             folder: Path, console: Console) -> UpdateResult:
    """Both campaigns, one after the other, with every unit powered and on the network."""
    result = UpdateResult()
    folder.mkdir(parents=True, exist_ok=True)
    boards = sorted({u.spec.board for u in units})
    good, bad, result.bundles = build_releases(keys, boards, folder)
    for version, size in result.bundles.items():
        console.print(f"  release {version}: a {size['kind']} bundle of {size['bytes']:,} B "
                      f"(the full one: {size['full_bytes']:,} B), signed by key {good.key_id}")
    store = campaign.CampaignStore(registry.engine)
    cohort = [u.device_id for u in units]
    names = {u.device_id: u.name for u in units}
    server = BundleServer("127.0.0.1", broker_port, "ota", password)
    try:
        for unit in units:
            unit.live(span="1d", scenario=unit.scenario_file(), usage="none", speed=SPEED)
        for name, made in ((campaign_name(GOOD), good), (campaign_name(BAD), bad)):
            version = made.manifest["version"]
            by_stage = campaign.plan(cohort, STAGES)
            store.create(name, version, made.data, STAGES, ABORT_AFTER, by_stage)
            with Progress(TextColumn("  {task.description:<30}"), BarColumn(),
                          TextColumn("{task.fields[state]}"), console=console) as bars:
                tasks = {d: bars.add_task(f"{names[d]} {version}", total=len(STATES),
                                          state="waiting for its stage") for d in cohort}

                def moved(device: str, state: str, reason: str, bars=bars, tasks=tasks):
                    at = (len(STATES) if state not in STATES[:-len(FINAL_STATES)]
                          else STATES.index(state) + 1)
                    bars.update(tasks[device], completed=at,
                                state=state + (f": {reason}" if reason else ""))

                ended = campaign.run(store, server, name, version, made.data, by_stage,
                                     ABORT_AFTER, STAGE_TIMEOUT_S, moved)
                result.campaigns[name] = found = store.get(name)
                for device in found["devices"]:
                    if device["state"] == "skipped":
                        bars.update(tasks[device["device_id"]],
                                    state="skipped: never offered")
            result.served[name] = {
                names[d]: {"bytes": u.bytes_served, "resent_chunks": u.resent_chunks}
                for d, u in server.updates.items() if u.campaign == name}
            console.print(f"  campaign {name}: {ended}"
                          + (f" ({found['reason']})" if found["reason"] else ""))
    finally:
        server.close()
        for unit in units:
            unit.power_off()
    return result
