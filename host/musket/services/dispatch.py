"""The dispatcher: delivers the engine's outbox (webhooks, sinks, device commands), each row
until it succeeds or is given up with the reason after its tries, waiting longer after each
failure (BACKOFF_BASE_S doubling up to BACKOFF_MAX_S).

Several dispatchers may share an outbox: a row is claimed for LEASE_S by a conditional
update, so one delivers it at a time, and a dispatcher that died mid-delivery leaves it to the
next once the lease runs out. Delivery is at least once, made exactly-once at the receiver by
the row's key: a webhook carries it as the Idempotency-Key header, a sink skips a key its file
already holds, a device command's id is derived from it (the device answers a repeated id
once). A device's commands found in one pass go together, several to a message
(musket.batches)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, or_, select, update

from musket.batches import compact, pack
from musket.broker import check_command_size, topic
from musket.errors import BadInput, Unreachable
from musket.fleet.views import iso_utc
from musket.registry.services_schema import svc_outbox

BACKOFF_BASE_S = 30  # the wait after a first failure; doubled after each next one
BACKOFF_MAX_S = 3600
LEASE_S = 120  # a claimed row is this dispatcher's for this long
WEBHOOK_TIMEOUT_S = 10
BATCH = 200  # rows claimed per pass
SINK_COLUMNS = ("key", "rule", "device_id", "customer_id", "location", "occurrence", "fired",
                "detail")


class DeliveryFailed(Exception):
    """One try failed; the message is the reason kept with the row (no secrets: a webhook's
    URL may hold a token, so it is never part of it). `permanent`: trying again cannot
    help (a command the device could never take), so the row is given up at once."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass
class DispatchResult:
    delivered: int = 0
    retrying: int = 0
    given_up: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def command_id(key: str) -> str:
    """A device command's id (1-32 of A-Z a-z 0-9 _ -) for an outbox key."""
    return "svc-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1)))


class Dispatcher:
    """`publish(device_id, payload: bytes)` sends a command to a device (raising on failure),
    or None when no broker is configured (command rows then wait)."""

    def __init__(self, engine: Engine, sink_dir: str | Path = ".", publish=None,
                 clock=None) -> None:
        self.engine = engine
        self.sink_dir = Path(sink_dir)
        self.publish = publish
        self.clock = clock or (lambda: datetime.now(UTC))

    def run_once(self) -> DispatchResult:
        now = self.clock()
        result = DispatchResult()
        o = svc_outbox.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(svc_outbox).where(
                o.state == "pending", o.next_at <= now,
                or_(o.claimed_until.is_(None), o.claimed_until < now))
                .order_by(o.id).limit(BATCH)).all()
        commands: dict[str, list] = {}  # device id -> its command rows, in order
        others = []
        for row in rows:
            if row.kind == "command" and self.publish is None:
                continue
            if not self._claim(row.id, now):
                continue
            if row.kind == "command":
                commands.setdefault(row.target, []).append(row)
            else:
                others.append(row)
        # Commands first, right after their claim: published after the lease ran out, a
        # command could also go with another dispatcher's batch, whose id is not this one's.
        for device_id, device_rows in commands.items():
            self._commands(device_id, device_rows, now, result)
        for row in others:
            try:
                self._deliver(row)
            except DeliveryFailed as e:
                self._failed(row, str(e), e.permanent, now, result)
            else:
                self._done(row, now, result)
        return result

    def _done(self, row, now: datetime, result: DispatchResult) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(svc_outbox).where(svc_outbox.c.id == row.id).values(
                state="done", done=now, attempts=row.attempts + 1, claimed_until=None,
                reason=None))
        result.delivered += 1

    def _commands(self, device_id: str, rows: list, now: datetime,
                  result: DispatchResult) -> None:
        # A device's commands of this pass go together, several to a message
        # (musket.batches): each message costs the device's paid link its own segments,
        # reply and acknowledgements. A row is delivered once its message is published.
        by_id = {}
        for row in rows:
            command = {**json.loads(row.payload), "id": command_id(row.key)}
            try:
                check_command_size(device_id, compact(command))
            except BadInput as e:
                self._failed(row, f"command: {e}", True, now, result)
                continue
            by_id[command["id"]] = (row, command)
        for payload, ids in pack(device_id, [command for _, command in by_id.values()]):
            try:
                self.publish(topic(device_id, "c"), payload)
            except Exception as e:  # noqa: BLE001 - any failure to send is a try that failed
                for cid in ids:
                    self._failed(by_id[cid][0], f"command: {type(e).__name__}: {e}", False,
                                 now, result)
                continue
            for cid in ids:
                self._done(by_id[cid][0], now, result)

    def _claim(self, row_id: int, now: datetime) -> bool:
        o = svc_outbox.c
        with self.engine.begin() as conn:
            return conn.execute(update(svc_outbox).where(
                o.id == row_id, o.state == "pending",
                or_(o.claimed_until.is_(None), o.claimed_until < now))
                .values(claimed_until=now + timedelta(seconds=LEASE_S))).rowcount == 1

    def _failed(self, row, reason: str, permanent: bool, now: datetime,
                result: DispatchResult) -> None:
        attempts = row.attempts + 1
        values = {"attempts": attempts, "claimed_until": None, "reason": reason[:500]}
        if attempts >= row.max_attempts or permanent:
            values.update(state="given_up",
                          reason=f"given up after {attempts} tries: {reason}"[:500])
            result.given_up += 1
        else:
            values["next_at"] = now + backoff(attempts)
            result.retrying += 1
        with self.engine.begin() as conn:
            conn.execute(update(svc_outbox).where(svc_outbox.c.id == row.id).values(**values))

    def _deliver(self, row) -> None:
        if row.kind == "webhook":
            self._webhook(row)
        elif row.kind == "sink":
            self._sink(row)
        else:
            raise DeliveryFailed(f"unknown action kind {row.kind!r}")

    def _webhook(self, row) -> None:
        request = urllib.request.Request(
            row.target, data=row.payload.encode(), method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": row.key})
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                if not 200 <= response.status < 300:
                    raise DeliveryFailed(f"webhook: HTTP {response.status}")
        except urllib.error.HTTPError as e:
            raise DeliveryFailed(f"webhook: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DeliveryFailed(f"webhook: {type(e).__name__}: {reason}") from None

    def _sink(self, row) -> None:
        path = self.sink_dir / row.target
        payload = json.loads(row.payload)
        try:
            # The key as the file holds it: a JSON line's "key" field, a CSV row's first.
            mark = (f"\n{_csv_line({'key': row.key}, False).split(',')[0]},"
                    if path.suffix == ".csv" else f'"key": {json.dumps(row.key)}')
            if path.exists() and mark in "\n" + path.read_text(encoding="utf-8"):
                return  # written before a crash kept the row pending
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".csv":
                text = _csv_line(payload, header=not path.exists())
            else:
                text = json.dumps(payload, sort_keys=True) + "\n"
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise DeliveryFailed(f"sink {row.target}: {e.strerror or e}") from None


def _csv_line(payload: dict, header: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(SINK_COLUMNS)
    detail = {k: v for k, v in payload.items() if k not in SINK_COLUMNS}
    writer.writerow([payload.get(c, "") for c in SINK_COLUMNS[:-1]] +
                    [json.dumps(detail, sort_keys=True)])
    return buf.getvalue()


def outbox(engine: Engine, state: str | None = None) -> list[dict]:
    """The outbox's rows (newest last) for the CLI: what was delivered, what waits, what was
    given up and why."""
    o = svc_outbox.c
    query = select(o.id, o.key, o.kind, o.state, o.attempts, o.max_attempts, o.next_at,
                   o.reason, o.done).order_by(o.id)
    if state:
        query = query.where(o.state == state)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [{"id": r.id, "key": r.key, "kind": r.kind, "state": r.state,
             "attempts": r.attempts, "max_attempts": r.max_attempts,
             "next_at": iso_utc(r.next_at), "reason": r.reason, "done": iso_utc(r.done)}
            for r in rows]


class CommandPublisher:
    """Device commands over MQTT (QoS 1, as the OTA server sends its offers): the broker keeps
    a command for a device that is away. Callable as a Dispatcher's `publish`."""

    CONNECT_TIMEOUT_S = 15
    PUBLISH_TIMEOUT_S = 10

    def __init__(self, host: str, port: int, user: str, password: str,
                 ca_file: str | None = None) -> None:
        import ssl
        import threading

        import paho.mqtt.client as mqtt

        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"musket-services-{user}"[:64],
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(user, password)
        if ca_file:
            self.client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_connect = lambda c, u, f, rc, p: rc == 0 and self._connected.set()
        try:
            self.client.connect(host, port, keepalive=60)
        except OSError as e:
            raise Unreachable(f"cannot reach the broker at {host}:{port}: {e}") from None
        self.client.loop_start()

    def __call__(self, topic_name: str, payload: bytes) -> None:
        if not self._connected.wait(self.CONNECT_TIMEOUT_S):
            raise DeliveryFailed("the broker did not accept the session")
        info = self.client.publish(topic_name, payload, qos=1)
        info.wait_for_publish(self.PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise DeliveryFailed("the broker did not acknowledge the command in time")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
