"""Storing what devices publish: one batch of messages in one transaction, each message taken
once, every bad one counted with its reason.

The service keeps nothing between batches but what it commits here, so several copies may
share the load: the tables' unique keys (see musket.registry.fleet_schema) decide which copy's
insert counts when two take the same message, and a message is acknowledged to the broker
only after the batch that holds it is committed (musket.fleet.ingest).

What a message may be refused for (fleet_rejected.reason):

==============  ==============================================================================
reason          what
==============  ==============================================================================
``topic``       the topic is not ``d/<device_id>/<leaf>``
``unknown``     the device is not in the registry
``undecodable`` the payload is not a message of its topic's kind (the detail says why)
``replayed``    a telemetry sequence number already stored, with other content
==============  ==============================================================================
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, and_, bindparam, insert, select, tuple_, update
from sqlalchemy.exc import OperationalError

from musket import messages
from musket.broker import BrokerError, parse_topic
from musket.errors import Unreachable
from musket.fleet import usage
from musket.fleet.sql import aware, insert_new
from musket.registry import database
from musket.registry.fleet_schema import (
    fleet_devices,
    fleet_events,
    fleet_messages,
    fleet_readings,
    fleet_rejected,
    fleet_sessions,
)
from musket.registry.schema import devices

REASONS = ("topic", "unknown", "undecodable", "replayed")
TAKE_ATTEMPTS = 3  # a batch is tried this often when the database fails it
SIGNAL_KEYS = ("rssi", "dbm")  # a reading's value taken as the device's signal, if it sends one
_IN_CHUNK = 500  # keys per IN (...) query: well under either database's bound parameters


@dataclass(frozen=True)
class Incoming:
    """One message as the broker delivered it."""

    topic: str
    payload: bytes
    retain: bool = False
    received: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Outcome:
    """What one batch did: messages stored, duplicates dropped, refusals by reason."""

    stored: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # "source: reason: detail", for the log

    def add(self, other: Outcome) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.rejected.update(other.rejected)
        self.problems += other.problems


class Rejected(Exception):
    """A message that is not stored, with the reason (one of REASONS) and the source."""

    def __init__(self, source: str, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.source, self.reason, self.detail = source, reason, detail


class FleetStore:
    """Takes batches of messages into the registry's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: set[str] = set()  # devices found in the registry (they are not removed)
        self.broker_lost_at: datetime | None = None  # set by the ingest when the broker went

    def take(self, batch: list[Incoming]) -> Outcome:
        """Stores `batch` in one transaction; raises only when the database fails (then
        nothing of the batch is stored, and nothing of it should be acknowledged)."""
        for attempt in range(TAKE_ATTEMPTS):
            outcome = Outcome()
            try:
                with self.engine.begin() as conn:
                    self._take_all(conn, batch, outcome)
                return outcome
            except OperationalError as e:
                # Two copies' transactions deadlocked (PostgreSQL ends one), a lock was not
                # granted in time, or the server went away: the batch again, then give up.
                if attempt + 1 == TAKE_ATTEMPTS:
                    raise Unreachable(f"registry {database.describe(str(self.engine.url))}: "
                                      f"{database._first_line(e)}") from None
        raise AssertionError("unreachable")

    def _take_all(self, conn: Connection, batch: list[Incoming], outcome: Outcome) -> None:
        # A batch in a few statements, whatever its size: the devices' rows first, in device
        # order, so that two copies taking batches of the same devices lock those rows in the
        # same order (no deadlock between them); then every telemetry message at once; the
        # statuses one by one, in order (each opens or closes a session).
        taken: list[tuple[Incoming, str, str, object]] = []
        for message in batch:
            try:
                device_id, leaf = parse_topic(message.topic)
            except BrokerError as e:
                self._refuse(conn, Rejected(message.topic[:128], "topic", str(e)), message,
                             outcome)
                continue
            taken.append((message, device_id, leaf, None))
        self._learn(conn, {device_id for _, device_id, _, _ in taken})
        seen: dict[str, datetime] = {}
        decoded = []
        for message, device_id, leaf, _ in taken:
            try:
                value = self._decode(device_id, leaf, message)
            except Rejected as r:
                self._refuse(conn, r, message, outcome)
                continue
            seen[device_id] = max(seen.get(device_id, message.received), message.received)
            if value is not None:
                decoded.append((message, device_id, leaf, value))
        _touch_all(conn, seen)
        telemetry = [t for t in decoded if t[2] in ("t", "e")]
        for r, message in _telemetry_all(conn, telemetry, outcome):
            self._refuse(conn, r, message, outcome)
        for message, device_id, leaf, value in decoded:
            if leaf == "s":
                self._status(conn, device_id, value, message)
                outcome.stored += 1
            elif leaf == "r":
                outcome.stored += 1

    def _refuse(self, conn: Connection, r: Rejected, message: Incoming,
                outcome: Outcome) -> None:
        _count_rejected(conn, r, message.received)
        outcome.rejected[r.reason] += 1
        outcome.problems.append(f"{r.source}: {r.reason}: {r.detail}")

    def _learn(self, conn: Connection, device_ids: set[str]) -> None:
        # The registry's devices among these, in one query (they are never removed: known
        # once, known for good).
        new = sorted(device_ids - self._known)
        for i in range(0, len(new), _IN_CHUNK):
            self._known.update(conn.execute(select(devices.c.device_id).where(
                devices.c.device_id.in_(new[i:i + _IN_CHUNK]))).scalars())

    def _decode(self, device_id: str, leaf: str, message: Incoming):
        # -> the decoded message, or None for traffic that is not the fleet's (OTA's `u`).
        if device_id not in self._known:
            raise Rejected(device_id, "unknown", f"{leaf} message from a device the "
                                                 "registry does not hold")
        try:
            if leaf in ("t", "e"):
                return messages.decode_telemetry(message.payload)
            if leaf == "s":
                return messages.decode_status(message.payload)
            if leaf == "r":
                return messages.decode_reply(message.payload)
        except BrokerError as e:
            raise Rejected(device_id, "undecodable", str(e)) from None
        return None

    def _status(self, conn: Connection, device_id: str, status: messages.Status,
                message: Incoming) -> None:
        digest = _digest(message.payload)
        row = conn.execute(select(fleet_devices).where(
            fleet_devices.c.device_id == device_id)).first()
        at = message.received
        open_session = conn.execute(
            select(fleet_sessions.c.id, fleet_sessions.c.connected)
            .where(fleet_sessions.c.device_id == device_id,
                   fleet_sessions.c.disconnected.is_(None))
            .order_by(fleet_sessions.c.id.desc())).first()
        lost = self.broker_lost_at
        broker_restarted = open_session is not None and lost is not None and \
            lost >= aware(open_session.connected)
        if row.status_digest == digest and (message.retain or status.raw
                                            or not broker_restarted):
            # The same bytes as the last status: the broker's retained copy handed again at
            # a (re)subscribe, or a redelivery of one this service took but had not
            # acknowledged: nothing new (a map carries its time, so a new one differs). Only
            # a bare 1 sent live after the broker restarted is a new session.
            return
        # A device publishes its status at each session start and again with its health
        # every health_interval_s: the latter is no new session unless the device restarted
        # meanwhile (its boot count or uptime says so) or the broker did.
        new_session = status.online and (open_session is None or not status.raw
                                         or broker_restarted or _rebooted(row, status))
        if open_session is not None and (new_session or not status.online):
            if not status.online:
                why, at_end = "will", at
            elif broker_restarted:
                why, at_end = "broker-restart", lost
            else:
                why, at_end = "reconnect", at
            conn.execute(update(fleet_sessions).where(fleet_sessions.c.id == open_session.id)
                         .values(disconnected=at_end, why=why))
        if status.online and _new_data_stop(row, status):
            _blame_data_stop(conn, device_id)
        if new_session:
            conn.execute(insert(fleet_sessions).values(device_id=device_id, connected=at))
        values = {"online": status.online, "status_at": at, "status_digest": digest}
        if status.online:
            values.update(_health(status))
        conn.execute(update(fleet_devices).where(fleet_devices.c.device_id == device_id)
                     .values(**values))
        if status.tx is not None or status.rx is not None:
            usage.record_device_totals(conn, device_id, row, status, at)


def _new_data_stop(row, status: messages.Status) -> bool:
    # The device counted a carrier data stop since its last status (it cannot say so while its
    # data is stopped); the first count heard is only the base.
    return status.data_stops is not None and row.data_stops is not None and \
        status.data_stops > row.data_stops


def _blame_data_stop(conn: Connection, device_id: str) -> None:
    # The session that ended last ended because the carrier stopped the SIM's data, whatever
    # the broker saw (the will, at the keep-alive's end).
    last = conn.execute(select(fleet_sessions.c.id).where(
        fleet_sessions.c.device_id == device_id, fleet_sessions.c.disconnected.is_not(None))
        .order_by(fleet_sessions.c.id.desc()).limit(1)).scalar()
    if last is not None:
        conn.execute(update(fleet_sessions).where(fleet_sessions.c.id == last)
                     .values(why="data-stop"))


def _rebooted(row, status: messages.Status) -> bool:
    if row.boot_count is not None and status.boot_count is not None:
        if status.boot_count != row.boot_count:
            return True
    return row.uptime_s is not None and status.uptime_s is not None and \
        status.uptime_s < row.uptime_s


def _health(status: messages.Status) -> dict:
    # A key the device left out is unknown, so what was known stays (a bare 1 leaves out
    # every key). `dp` alone is sent only while true: its absence says the data flows.
    if not status.raw:
        return {}
    out = {"firmware": status.firmware, "boot_count": status.boot_count,
           "reset_cause": status.reset_cause, "crash_time": status.crash_time,
           "crash": status.crash, "uptime_s": status.uptime_s, "session_s": status.session_s,
           "connect_failures": status.connect_failures, "heap_free": status.heap_free,
           "heap_largest": status.heap_largest, "data_stops": status.data_stops}
    for key, value in (("reboot_reasons", status.reboot_reasons), ("rejects", status.rejects),
                       ("diagnosis", status.diagnosis)):
        out[key] = None if value is None else json.dumps(value)
    out = {k: v for k, v in out.items() if v is not None}
    out["data_paused"] = status.data_paused
    return out


def _telemetry_all(conn: Connection, batch: list, outcome: Outcome) -> list:
    """Stores the batch's telemetry messages (message, device_id, leaf, decoded) with their
    events and readings, each message once; returns [(Rejected, message)] for replays (a
    sequence number stored before with other content)."""
    first: dict[tuple[str, int], tuple] = {}
    again = []
    for message, device_id, leaf, msg in batch:
        key = (device_id, msg.mseq)
        entry = (message, device_id, leaf, msg, _digest(message.payload))
        if key in first:
            again.append(entry)  # the same message twice in one batch: a redelivery
        else:
            first[key] = entry
    inserted = set()
    if first:
        inserted = {tuple(row) for row in insert_new(conn, fleet_messages, [
            {"device_id": d, "mseq": msg.mseq, "leaf": leaf, "digest": digest,
             "received": message.received}
            for message, d, leaf, msg, digest in first.values()]).all()}
    # What a repeated sequence number is compared with: the stored message's digest, or for
    # a repeat within this batch, the digest of its first copy.
    stored_digests = _digests(conn, [k for k in first if k not in inserted])
    refused = []
    for entry in [e for k, e in first.items() if k not in inserted] + again:
        message, device_id, _, msg, digest = entry
        earlier = stored_digests.get((device_id, msg.mseq), first[(device_id, msg.mseq)][4])
        if earlier != digest:
            refused.append((Rejected(device_id, "replayed", f"message sequence {msg.mseq} was "
                                     "stored before with other content"), message))
        else:
            outcome.duplicates += 1
    new = [first[k] for k in first if k in inserted]
    outcome.stored += len(new)
    events = [{"device_id": d, "seq": e.seq, "time": e.time, "kind": e.kind,
               "name": str(e.name)[:32], "delta": e.delta, "total": e.total,
               "info": None if e.info is None else str(e.info)}
              for _, d, _, msg, _ in new for e in sorted(msg.events, key=lambda e: e.seq)]
    readings = [{"device_id": d, "rseq": r.rseq, "time": r.time,
                 "values_json": json.dumps(r.values, sort_keys=True)}
                for _, d, _, msg, _ in new for r in sorted(msg.readings, key=lambda r: r.rseq)]
    if events:
        insert_new(conn, fleet_events, events)
    if readings:
        insert_new(conn, fleet_readings, readings)
    signals = {}
    for _, device_id, _, msg, _ in new:
        if msg.readings:
            newest = max(msg.readings, key=lambda r: r.rseq)
            signal = next((newest.values[k] for k in SIGNAL_KEYS if k in newest.values), None)
            if signal is not None:
                signals[device_id] = float(signal)
    if signals:
        conn.execute(update(fleet_devices).where(fleet_devices.c.device_id == bindparam("d"))
                     .values(signal=bindparam("s")),
                     [{"d": d, "s": v} for d, v in sorted(signals.items())])
    return refused


def _digests(conn: Connection, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    # The stored digests of these (device_id, mseq) messages.
    out = {}
    m = fleet_messages.c
    for i in range(0, len(keys), _IN_CHUNK):
        chunk = keys[i:i + _IN_CHUNK]
        out.update({(d, n): digest for d, n, digest in conn.execute(
            select(m.device_id, m.mseq, m.digest).where(tuple_(m.device_id, m.mseq).in_(chunk)))})
    return out


def _touch_all(conn: Connection, seen: dict[str, datetime]) -> None:
    # Each device's row exists from its first message on, and last_seen only moves forward.
    # In device order: see FleetStore._take_all.
    if not seen:
        return
    order = sorted(seen)
    insert_new(conn, fleet_devices, [{"device_id": d, "online": False, "last_seen": seen[d],
                                      "data_paused": False} for d in order])
    d = fleet_devices.c
    conn.execute(update(fleet_devices).where(and_(d.device_id == bindparam("d"),
                                                  d.last_seen < bindparam("at")))
                 .values(last_seen=bindparam("at")),
                 [{"d": device_id, "at": seen[device_id]} for device_id in order])


def _count_rejected(conn: Connection, r: Rejected, at: datetime) -> None:
    key = and_(fleet_rejected.c.source == r.source, fleet_rejected.c.reason == r.reason)
    insert_new(conn, fleet_rejected, [{"source": r.source, "reason": r.reason, "count": 0,
                                       "first": at, "last": at}])
    conn.execute(update(fleet_rejected).where(key).values(
        count=fleet_rejected.c.count + 1, last=at, detail=r.detail[:500]))


def _digest(payload: bytes) -> str:
    return hashlib.sha256(bytes(payload)).hexdigest()[:32]
