"""`musket sim fleet`: many lightweight virtual devices against a broker, each enrolled in the
registry with its own SIM, IMEI and credentials, as the factory line would have left them.

The devices themselves run in musket_sim.swarm processes (sim/swarm.py: the firmware's MQTT
client and codec over real sockets); this module enrolls them, splits them over processes,
and gathers what the processes report. The devices' passwords are kept in the work folder
(`swarm-devices.json`, readable by its owner only), so a second run reuses the same devices;
the registry keeps only the broker's hashes, as for real units.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from musket import broker
from musket.errors import BadInput, Unreachable
from musket.identity import luhn_check_digit
from musket.registry import binding
from musket.registry.core import Actor, Registry

DEVICES_FILE = "swarm-devices.json"
RESUMED = ("mseq", "events", "readings", "brews")
# backlog_s for a fleet met in its steady state: each device somewhere in its batching cycle
# (sim/swarm.py), rather than all of them starting it together.
STEADY = -1  # what a device's next run goes on from
ICCID_PREFIX = "89490192"  # ITU-T E.118: 89 telecom, 49 country; the rest is the issuer's
IMEI_TAC = "35982011"  # an 8-digit type allocation code for the virtual modems
ID_PREFIX = "swm"
_CHIP_PREFIX = "5e"  # virtual chip ids, apart from the full virtual devices' (24:0a:c4...)


class SwarmError(BadInput):
    """A swarm that cannot start: no devices file, a process that would not run."""


@dataclass(frozen=True)
class SwarmDevice:
    id: str
    iccid: str
    password: str

    def __repr__(self) -> str:  # the password belongs in no log line
        return f"SwarmDevice({self.id!r}, {self.iccid!r})"


@dataclass
class SwarmResult:
    devices: dict[str, dict] = field(default_factory=dict)  # id -> the swarm's totals for it
    sent: int = 0
    acked: int = 0
    failures: int = 0
    connected_max: int = 0
    last_error: str | None = None
    # Full collections of the swarm's processes' heaps: a few, made by CPython as it sees fit,
    # not one for each packet a device reads.
    full_collections: int = 0


def _identity(seed: int, index: int) -> tuple[str, str, str]:
    # -> (ICCID, IMEI, chip id) for the index-th device of a seed: the same every run.
    body = f"{ICCID_PREFIX}{seed % 1000:03d}{index:07d}"
    iccid = body + luhn_check_digit(body)
    imei_body = f"{IMEI_TAC}{(seed * 1000003 + index) % 1000000:06d}"
    chip = f"{_CHIP_PREFIX}{seed % 256:02x}{index:08x}"
    return iccid, imei_body + luhn_check_digit(imei_body), chip


def enroll(registry: Registry, count: int, workdir: Path, actor: Actor, *, seed: int = 0,
           board: str = "esp32-sim7080g") -> list[SwarmDevice]:
    """The first `count` devices of the swarm: those the work folder already knows, and new
    ones bound in the registry (their SIMs imported in inventory first, as from the vendor's
    list). Returns them in order."""
    path = workdir / DEVICES_FILE
    known = [SwarmDevice(**d) for d in json.loads(path.read_text())] if path.exists() else []
    if len(known) >= count:
        return known[:count]
    start = len(known)
    identities = [_identity(seed, i) for i in range(start, count)]
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as sims:
        writer = csv.writer(sims)
        writer.writerow(["iccid", "plan", "state"])
        writer.writerows((iccid, "swarm", "inventory") for iccid, _, _ in identities)
    try:
        registry.import_sims(sims.name, actor)
    finally:
        os.unlink(sims.name)
    new = []
    with registry.transaction() as conn:
        for iccid, imei, chip in identities:
            unit = binding.Unit(iccid=iccid, imei=imei, imsi=None, chip_id=chip, board=board)
            plan = binding.plan(conn, unit, id_prefix=ID_PREFIX)
            password = broker.new_password()
            credentials = binding.Credentials(broker.hash_password(password),
                                              hashlib.sha256(password.encode()).hexdigest())
            binding.apply(conn, plan, unit, actor, new_credentials=credentials)
            new.append(SwarmDevice(plan.device_id, iccid, password))
    devices = known + new
    workdir.mkdir(parents=True, exist_ok=True)
    broker.write_text_atomically(path, json.dumps([d.__dict__ for d in devices]), 0o600)
    return devices


def swarm_environment() -> dict[str, str]:
    """The environment of a swarm process: the firmware and the plain stand-ins on its path."""
    from musket_sim.chip.cpython import plain

    env = dict(os.environ)
    env["PYTHONPATH"] = plain.pythonpath() + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run(devices: list[SwarmDevice], brokers: list[tuple[str, int]], *, run_s: float,
        speed: float = 1.0, processes: int = 1, brews_per_day: float = 20,
        backlog_s: float = STEADY, seed: int = 0, start: float | None = None,
        profile: dict | None = None, workdir: Path, progress=None,
        resume: dict[str, dict] | None = None) -> SwarmResult:
    """Runs the devices for `run_s` wall seconds over `processes` processes, the devices
    shared out over `brokers` ((host, port) of each node of a cluster) in turn, each moving
    to the next node when a session fails; `progress(connected, acked)` is called with the
    running totals about once a second. `resume` (an earlier run's `devices`) lets each device
    go on numbering its messages, events and readings from where that run left it."""
    if not devices:
        raise SwarmError("no devices to run")
    processes = max(1, min(processes, len(devices)))
    entries = [{"id": d.id, "user": d.id, "password": d.password,
                "brokers": brokers[i % len(brokers):] + brokers[:i % len(brokers)],
                "resume": {k: v for k, v in (resume or {}).get(d.id, {}).items()
                           if k in RESUMED}}
               for i, d in enumerate(devices)]
    procs = []
    for k in range(processes):
        spec = {"devices": entries[k::processes],
                "run_s": run_s, "speed": speed, "brews_per_day": brews_per_day,
                "backlog_s": backlog_s, "seed": seed * 100 + k, "profile": profile or {},
                "connects_per_s": 500 / processes}
        if start is not None:
            spec["start"] = start
        spec_path = workdir / f"swarm-{k}.json"
        broker.write_text_atomically(spec_path, json.dumps(spec), 0o600)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "musket_sim.swarm", str(spec_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=swarm_environment()))
    try:
        return _gather(procs, progress)
    except BaseException:
        # Interrupted (Ctrl-C) or failed: no swarm process outlives the run that started it.
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
        raise


def _gather(procs, progress) -> SwarmResult:
    # Reads every process's lines as they come: one reader thread per process keeps the
    # pipes drained, and the sum of their latest totals is the swarm's.
    import threading

    latest: list[dict] = [{} for _ in procs]
    done: list[dict | None] = [None for _ in procs]
    result = SwarmResult()

    def read(k: int) -> None:
        for line in procs[k].stdout:
            report = json.loads(line)
            if report["event"] == "done":
                done[k] = report
            latest[k] = report

    readers = [threading.Thread(target=read, args=(k,), daemon=True) for k in range(len(procs))]
    for t in readers:
        t.start()
    while any(t.is_alive() for t in readers):
        for t in readers:
            t.join(1.0)
        connected = sum(r.get("connected", 0) for r in latest)
        result.connected_max = max(result.connected_max, connected)
        if progress is not None:
            progress(connected, sum(r.get("acked", 0) for r in latest))
    errors = []
    for k, p in enumerate(procs):
        p.wait()
        if p.returncode != 0 or done[k] is None:
            errors.append(f"swarm process {k} ended with {p.returncode}: "
                          f"{p.stderr.read().strip()[-400:]}")
    if errors:
        raise SwarmError("; ".join(errors))
    for report in done:
        result.devices.update(report["devices"])
        result.connected_max = max(result.connected_max, report.get("connected_max", 0))
        result.sent += report["sent"]
        result.acked += report["acked"]
        result.failures += report["failures"]
        result.full_collections += report["full_collections"]
        result.last_error = report["last_error"] or result.last_error
    if not result.connected_max:
        raise Unreachable(f"no device could connect to the broker: {result.last_error}",
                          hint="is the broker running, and does it know the devices? "
                               "(musket registry export-broker, then reload it)")
    return result
