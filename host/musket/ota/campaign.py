"""Update campaigns: a bundle rolled out to a cohort of devices in stages (a canary, then a
share, then everyone), each stage offered only when the one before ended well, and the whole
campaign aborted when a stage's failures pass a threshold: the devices of later stages never
receive the bundle. Every device's state is kept in the registry (tables ota_campaigns and
ota_devices), so `musket ota status` answers from there and `musket ota abort` stops a
campaign another process runs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from musket.errors import BadInput, Refused
from musket.ota.transfer import FINAL_STATES, BundleServer
from musket.registry.schema import devices, ota_campaigns, ota_devices

FAILED = ("rolled_back", "rejected", "timed_out")
POLL_S = 0.5  # how often a running stage's states are copied to the registry


class CampaignError(BadInput):
    """A campaign's plan or name is not valid."""


class CampaignRefused(Refused):
    """The registry already holds a campaign of that name, or none."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def plan(devices: list[str], stages: list[str]) -> list[list[str]]:
    """The cohort's devices by stage. A stage is a count ("1") or a share of the cohort
    ("25%"), each the total reached by the end of that stage; the last stage takes the rest."""
    cohort = list(dict.fromkeys(devices))
    if not cohort:
        raise CampaignError("a campaign needs at least one device")
    if not stages:
        raise CampaignError("a campaign needs at least one stage (e.g. 1,25%,100%)")
    out: list[list[str]] = []
    reached = 0
    for i, stage in enumerate(stages):
        text = stage.strip()
        try:
            if text.endswith("%"):
                share = float(text[:-1])
                if not 0 < share <= 100:
                    raise ValueError
                total = max(1, -(-len(cohort) * int(share * 100) // 10000))
            else:
                total = int(text)
                if total <= 0:
                    raise ValueError
        except ValueError:
            raise CampaignError(f"stage {i + 1} {stage!r}: expected a count (5) or a share of "
                                "the cohort (25%)") from None
        total = len(cohort) if i == len(stages) - 1 else min(total, len(cohort))
        if total > reached:
            out.append(cohort[reached:total])
            reached = total
    return out


class CampaignStore:
    """The campaigns in the registry's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str, version: str, data: bytes, stages: list[str], abort_after: int,
               by_stage: list[list[str]]) -> None:
        now = _now()
        with self.engine.begin() as db:
            if db.execute(sa.select(ota_campaigns.c.name)
                          .where(ota_campaigns.c.name == name)).first():
                raise CampaignRefused(f"campaign {name} exists",
                                      hint="name a new campaign (`musket ota status` shows it)")
            db.execute(ota_campaigns.insert().values(
                name=name, version=version, bundle_sha256=hashlib.sha256(data).hexdigest(),
                stages=json.dumps(stages), abort_after=abort_after, state="running",
                created=now, updated=now))
            db.execute(ota_devices.insert(), [
                {"campaign": name, "device_id": device, "stage": i + 1, "state": "pending",
                 "updated": now}
                for i, stage in enumerate(by_stage) for device in stage])

    def set_device(self, name: str, device: str, state: str, reason: str | None = None) -> None:
        with self.engine.begin() as db:
            db.execute(ota_devices.update()
                       .where(ota_devices.c.campaign == name, ota_devices.c.device_id == device)
                       .values(state=state, reason=reason, updated=_now()))

    def finish(self, name: str, state: str, reason: str | None = None) -> None:
        """Ends a running campaign (completed, or aborted with the reason); the devices not
        yet offered are skipped."""
        with self.engine.begin() as db:
            db.execute(ota_campaigns.update()
                       .where(ota_campaigns.c.name == name, ota_campaigns.c.state == "running")
                       .values(state=state, reason=reason, updated=_now()))
            db.execute(ota_devices.update()
                       .where(ota_devices.c.campaign == name, ota_devices.c.state == "pending")
                       .values(state="skipped", updated=_now()))

    def get(self, name: str) -> dict:
        with self.engine.connect() as db:
            row = db.execute(sa.select(ota_campaigns)
                             .where(ota_campaigns.c.name == name)).mappings().first()
            if row is None:
                raise CampaignRefused(f"no campaign named {name}")
            devices = db.execute(sa.select(ota_devices)
                                 .where(ota_devices.c.campaign == name)
                                 .order_by(ota_devices.c.stage, ota_devices.c.device_id)
                                 ).mappings().all()
        out = {k: row[k] for k in ("name", "version", "bundle_sha256", "abort_after", "state",
                                   "reason")}
        out["stages"] = json.loads(row["stages"])
        out["devices"] = [{k: d[k] for k in ("device_id", "stage", "state", "reason")}
                          for d in devices]
        return out

    def state(self, name: str) -> str:
        return self.get(name)["state"]

    def cohort(self, devices: list[str], boards: list[str], tags: list[str]) -> list[str]:
        """A campaign's devices: those named, then the registry's devices on each board, then
        those carrying each tag (musket.registry.tags); each once, in that order."""
        from musket.registry import tags as device_tags

        out = list(devices) + (self.devices_on(boards) if boards else [])
        out += device_tags.tagged(self.engine, tags) if tags else []
        return list(dict.fromkeys(out))

    def devices_on(self, boards: list[str]) -> list[str]:
        """The registry's devices built on these boards, by device ID: a cohort."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(devices.c.device_id)
                              .where(devices.c.board.in_(boards))
                              .order_by(devices.c.device_id)).all()
        return [row[0] for row in rows]


def run(store: CampaignStore, server: BundleServer, name: str, version: str, data: bytes,
        by_stage: list[list[str]], abort_after: int, stage_timeout_s: float,
        on_change: Callable[[str, str, str], None] | None = None) -> str:
    """Runs a created campaign to its end: 'completed', or 'aborted' (by its failures or by
    `musket ota abort`)."""
    for number, stage in enumerate(by_stage, start=1):
        if store.state(name) != "running":
            return "aborted"
        for device in stage:
            server.offer(device, name, version, data)
            store.set_device(name, device, "offered")
        seen = {device: "offered" for device in stage}
        recorded = {device: 1 for device in stage}  # of each update's history
        deadline = time.monotonic() + stage_timeout_s
        while True:
            for device in stage:
                # Every state the device passed, in turn, though several came at once.
                passed = server.updates[device].history[recorded[device]:]
                recorded[device] += len(passed)
                for state, reason in passed:
                    seen[device] = state
                    store.set_device(name, device, state, reason)
                    if on_change:
                        on_change(device, state, reason or "")
            pending = [d for d in stage if seen[d] not in FINAL_STATES]
            if not pending or store.state(name) != "running":
                break
            if time.monotonic() > deadline:
                for device in pending:
                    seen[device] = "timed_out"
                    store.set_device(name, device, "timed_out", "no result within the stage")
                break
            time.sleep(POLL_S)
        failed = [d for d in stage if seen[d] in FAILED]
        if len(failed) > abort_after:
            store.finish(name, "aborted", f"stage {number}: {len(failed)} of {len(stage)} "
                                          f"device(s) failed ({', '.join(failed[:5])})")
            return "aborted"
    store.finish(name, "completed")
    return store.state(name)
