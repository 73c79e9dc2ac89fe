"""The fleet service under a fleet's load, on this machine's two cores: lightweight devices
(`musket sim fleet`'s, sim/swarm.py) on a real Mosquitto, two copies of `musket fleet serve`
sharing the messages, and a real PostgreSQL (started without fsync, as a throwaway server).

Two phases:
  sustained  DEVICES devices connect (500 a second) and live on the default profile at the
             speed of real time for SUSTAIN_S. Ingest latency is from the moment a device
             published a message to the moment its row is visible, committed, in PostgreSQL
             (a poller reads new rows every POLL_S, so it is known to within that).
  backlog    the fleet service goes away; the devices come back from a two-hour outage of
             their own and send what waited, which the broker keeps for the service's
             persistent sessions; then the service comes back and drains it. The rate is
             messages committed per second, from the first commit to the last.

Figures:
  fleet.devices_sustained  devices connected at once, all of them reporting, with the ingest
                           latency's p99 under 2 s (0 when it was not)
  fleet.ingest_p99_ms      that p99
  fleet.ingest_msgs_per_s  the backlog's drain rate, broker to committed
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "host"))  # the throwaway PostgreSQL server

from pgserver import PostgresServer  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from musket import broker, simfleet, system  # noqa: E402
from musket.registry.core import Registry, default_actor  # noqa: E402

# Smaller values (environment) for a quick try; `make bench` runs the defaults.
DEVICES = int(os.environ.get("MUSKET_BENCH_FLEET_DEVICES", "10000"))
SUSTAIN_S = int(os.environ.get("MUSKET_BENCH_FLEET_SUSTAIN_S", "150"))  # the ramp included
BACKLOG_S = 7200  # the outage the devices come back from
DRAIN_S = 45  # wall seconds the devices get to connect and send it
POLL_S = 0.1
P99_TARGET_MS = 2000
# The copies of `musket fleet serve`: one status owner that takes only the statuses, and the
# telemetry shared by the others (an MQTT shared subscription). After the outage every device's
# reconnection sends a status at once; a status owner that also took a share of the telemetry
# would have that share queued behind them.
SERVICES = {"fleet-s": "bench-fleet-s-pw", "fleet-1": "bench-fleet-1-pw",
            "fleet-2": "bench-fleet-2-pw"}
STATUS_OWNER = "fleet-s"


class CommitWatch:
    """When each (device, mseq) row first became visible in the database."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.seen: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Each look reads only the rows committed since the look before: those whose inserting
        # transaction that look's snapshot (taken before its read) did not see. Reading the
        # whole table ten times a second would take a good share of a core from what is
        # measured. The server is a fresh, throwaway one: a row's 32-bit xmin is its xid8.
        everything = text("SELECT device_id, mseq FROM fleet_messages")
        since = text("SELECT device_id, mseq FROM fleet_messages "
                     "WHERE NOT pg_visible_in_snapshot(xmin::text::xid8, CAST(:s AS pg_snapshot))")
        snapshot = None
        while not self._stop.is_set():
            with self.engine.connect() as conn:
                taken = conn.execute(text("SELECT pg_current_snapshot()::text")).scalar()
                rows = conn.execute(everything).all() if snapshot is None else \
                    conn.execute(since, {"s": snapshot}).all()
            snapshot = taken
            now = time.time()
            for device_id, mseq in rows:
                self.seen.setdefault((device_id, mseq), now)
            self._stop.wait(POLL_S)

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self.engine.dispose()


def _mosquitto(work: Path, registry: Registry) -> tuple[subprocess.Popen, int]:
    users = registry.broker_users()
    entries = users + [(u, broker.hash_password(p)) for u, p in SERVICES.items()]
    (work / "passwd").write_text(broker.render_hashed_password_file(entries))
    (work / "acl").write_text(broker.render_acl([u for u, _ in users], list(SERVICES)))
    port = simfleet_free_port()
    conf = broker.MosquittoConf(password_file=str(work / "passwd"), acl_file=str(work / "acl"),
                                tls=False, port=port, address="127.0.0.1",
                                persistence_location=str(work) + "/")
    # A backlog of the whole fleet waits for the fleet service in the broker: no cap on the
    # messages queued for one client (Mosquitto's default keeps 1000 and drops the rest).
    (work / "mosquitto.conf").write_text(conf.render() + f"user {getpass.getuser()}\n"
                                         "max_queued_messages 0\nset_tcp_nodelay true\n")
    proc = subprocess.Popen([str(system.require("mosquitto")), "-c", str(work / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    return proc, port


def simfleet_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fleet_serve(url: str, port: int, user: str, work: Path) -> subprocess.Popen:
    env = dict(os.environ, MUSKET_MQTT_PASSWORD=SERVICES[user])
    log = open(work / f"{user}.log", "ab")  # noqa: SIM115 - the process's own
    profile = os.environ.get("MUSKET_BENCH_FLEET_PROFILE")  # a folder: cProfile each copy
    command = [str(Path(sys.executable).parent / "musket")] if not profile else [
        sys.executable, "-m", "cProfile", "-o", f"{profile}/{user}-{time.time():.0f}.prof",
        "-m", "musket.cli"]
    role = ["--status", "--no-telemetry"] if user == STATUS_OWNER else ["--no-status"]
    return subprocess.Popen(
        [*command, "fleet", "serve", "--registry", url,
         "--broker", f"127.0.0.1:{port}", "--user", user, "--client-id", user,
         "--group", "fleet", *role],
        env=env, stdout=log, stderr=log)


def _fleet(url: str, port: int, work: Path) -> list[subprocess.Popen]:
    return [_fleet_serve(url, port, user, work) for user in SERVICES]


def _mark_statuses(device: simfleet.SwarmDevice, port: int) -> bytes:
    """Publishes one more status of `device`, as the device would: the last one in the status
    owner's queue, so its row showing it says every status before it is taken."""
    import json

    import paho.mqtt.client as mqtt

    payload = json.dumps({"v": 1, "on": 1, "t": int(time.time())}).encode()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device.id,
                         protocol=mqtt.MQTTv311, clean_session=True)
    client.username_pw_set(device.id, device.password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(f"d/{device.id}/s", payload, qos=1, retain=True).wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()
    return payload


def _status_taken_at(url: str, device_id: str, payload: bytes, until: float) -> float | None:
    # When the status owner stored `payload` as the device's last status (None: not by then).
    from musket.fleet.store import _digest

    engine = create_engine(url)
    query = text("SELECT status_digest FROM fleet_devices WHERE device_id = :d")
    try:
        while time.time() < until:
            with engine.connect() as conn:
                if conn.execute(query, {"d": device_id}).scalar() == _digest(payload):
                    return time.time()
            time.sleep(POLL_S)
    finally:
        engine.dispose()
    return None


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    # SIGTERM (a CI timeout, `kill`) stops the bench as Ctrl-C does: through the `finally`
    # below, which stops Mosquitto, the copies of the fleet service and PostgreSQL.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    pg = PostgresServer()
    pg.start()
    work = Path(tempfile.mkdtemp(prefix="musket-bench-fleet-"))
    print(f"work folder: {work}")
    procs: list[subprocess.Popen] = []
    watch = None
    try:
        url = pg.new_database()
        with Registry.open(url, migrate=True) as registry:
            t0 = time.monotonic()
            devices = simfleet.enroll(registry, DEVICES, work, default_actor("bench", "bench"))
            print(f"enrolled {len(devices):,} devices in {time.monotonic() - t0:.1f} s")
            mosquitto, port = _mosquitto(work, registry)
        procs.append(mosquitto)
        procs += _fleet(url, port, work)
        time.sleep(3)
        watch = CommitWatch(url)
        brokers = [("127.0.0.1", port)]

        sustained = simfleet.run(devices, brokers, run_s=SUSTAIN_S, speed=1.0, processes=2,
                                 backlog_s=simfleet.STEADY, workdir=work)
        time.sleep(2 * POLL_S + 1)
        if not any(r["published"] for r in sustained.devices.values()):
            raise SystemExit("no device published a message: run longer")
        latencies = [watch.seen[(d, m)] - at for d, r in sustained.devices.items()
                     for m, at in r["published"] if (d, m) in watch.seen]
        missing = sum(len(r["published"]) for r in sustained.devices.values()) - len(latencies)
        p99_ms = _p99(latencies) * 1000 if latencies else float("inf")
        print(f"sustained: {sustained.connected_max:,} connected at most, "
              f"{sustained.acked:,} messages, {len(latencies):,} committed "
              f"({missing} not seen), {sustained.failures} session failures, p99 "
              f"{p99_ms:.0f} ms, p50 {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms")
        ok = (sustained.connected_max == len(devices) and missing == 0 and latencies
              and p99_ms <= P99_TARGET_MS)
        print(f"FIGURE fleet.devices_sustained {len(devices) if ok else 0} devices")
        print(f"FIGURE fleet.ingest_p99_ms {p99_ms:.0f} ms")

        # The backlog: the fleet service is away while every device comes back from a
        # 2-hour outage of its own and sends what waited; the broker keeps it all for the
        # service's persistent sessions. Then the service comes back and drains it.
        for p in procs[1:]:
            p.terminate()
            p.wait(30)
        before = set(watch.seen)
        backlog = simfleet.run(devices, brokers, run_s=DRAIN_S, speed=1.0, processes=2,
                               backlog_s=BACKLOG_S, seed=1, workdir=work,
                               resume=sustained.devices)
        print(f"backlog: {backlog.acked:,} messages acknowledged by the broker while the "
              f"fleet service was away")
        marker = _mark_statuses(devices[0], port)
        started = time.time()
        procs[1:] = _fleet(url, port, work)
        print(f"backlog: drained by {len(SERVICES)} copies of `musket fleet serve`: "
              f"{STATUS_OWNER} the statuses, {len(SERVICES) - 1} sharing the telemetry")
        deadline = time.time() + 300
        while time.time() < deadline and len(watch.seen) - len(before) < backlog.acked:
            time.sleep(0.5)
        times = sorted(t for key, t in watch.seen.items() if key not in before)
        statuses_at = _status_taken_at(url, devices[0].id, marker, deadline)
        if len(times) > 1:
            rate = (len(times) - 1) / max(times[-1] - times[0], 1e-3)
            print(f"backlog: {len(times):,} committed in {times[-1] - times[0]:.1f} s from the "
                  f"first to the last ({times[0] - started:.1f} s to the first after the "
                  f"copies started)")
            print("backlog: the statuses sent at the reconnections taken "
                  + (f"{statuses_at - started:.1f} s after the copies started"
                     if statuses_at else "not all within 300 s"))
            print(f"FIGURE fleet.ingest_msgs_per_s {rate:.0f} msg/s")
    finally:
        if watch is not None:
            watch.stop()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        import shutil

        shutil.copy(pg.root / "server.log", work / "postgres.log")
        pg.stop()


if __name__ == "__main__":
    main()
