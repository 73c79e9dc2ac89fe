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

from sqlalchemy import Connection, Engine, and_, select, tuple_, update
from sqlalchemy.exc import OperationalError

from musket import messages
from musket.broker import BrokerError, parse_topic
from musket.errors import Unreachable
from musket.fleet import statuses
from musket.fleet.sql import IN_CHUNK, insert_new, update_many
from musket.registry import database
from musket.registry.fleet_schema import (
    fleet_devices,
    fleet_events,
    fleet_messages,
    fleet_readings,
    fleet_rejected,
)
from musket.registry.schema import devices

REASONS = ("topic", "unknown", "undecodable", "replayed")
TAKE_ATTEMPTS = 3  # a batch is tried this often when the database fails it
SIGNAL_KEYS = ("rssi", "dbm")  # a reading's value taken as the device's signal, if it sends one
# A reading's values as stored: json.dumps(values, sort_keys=True), with the encoder made once
# rather than for each of a backlog's thousands of readings.
_VALUES_JSON = json.JSONEncoder(sort_keys=True)


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
        # A batch in a few statements, whatever its size: rows for devices new to the fleet
        # first; then every telemetry message at once; then the statuses, applied in order
        # (each opens or closes a session: fleet.statuses); last, everything the batch changes
        # in its devices' rows, in one statement. Those rows are what copies taking batches of
        # the same devices (the status owner and a telemetry copy) both write: taken last and
        # together, their locks are held only until the commit that follows, and always in
        # one order (no deadlock between copies).
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
        _add_devices(conn, seen)
        telemetry = [t for t in decoded if t[2] in ("t", "e")]
        refused, signals = _telemetry_all(conn, telemetry, outcome)
        for r, message in refused:
            self._refuse(conn, r, message, outcome)
        status = [(device_id, value, message) for message, device_id, leaf, value in decoded
                  if leaf == "s"]
        changes = statuses.apply(conn, status, [_digest(m.payload) for _, _, m in status],
                                 self.broker_lost_at) if status else {}
        _write_devices(conn, seen, signals, changes)
        outcome.stored += len(status) + sum(1 for t in decoded if t[2] == "r")

    def _refuse(self, conn: Connection, r: Rejected, message: Incoming,
                outcome: Outcome) -> None:
        _count_rejected(conn, r, message.received)
        outcome.rejected[r.reason] += 1
        outcome.problems.append(f"{r.source}: {r.reason}: {r.detail}")

    def _learn(self, conn: Connection, device_ids: set[str]) -> None:
        # The registry's devices among these, in one query (they are never removed: known
        # once, known for good).
        new = sorted(device_ids - self._known)
        for i in range(0, len(new), IN_CHUNK):
            self._known.update(conn.execute(select(devices.c.device_id).where(
                devices.c.device_id.in_(new[i:i + IN_CHUNK]))).scalars())

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


def _telemetry_all(conn: Connection, batch: list, outcome: Outcome) -> tuple[list, dict]:
    """Stores the batch's telemetry messages (message, device_id, leaf, decoded) with their
    events and readings, each message once; returns [(Rejected, message)] for replays (a
    sequence number stored before with other content), and each device's newest signal."""
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
                 "values_json": _VALUES_JSON.encode(r.values)}
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
    return refused, signals


def _digests(conn: Connection, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    # The stored digests of these (device_id, mseq) messages.
    out = {}
    m = fleet_messages.c
    for i in range(0, len(keys), IN_CHUNK):
        chunk = keys[i:i + IN_CHUNK]
        out.update({(d, n): digest for d, n, digest in conn.execute(
            select(m.device_id, m.mseq, m.digest).where(tuple_(m.device_id, m.mseq).in_(chunk)))})
    return out


def _add_devices(conn: Connection, seen: dict[str, datetime]) -> None:
    # Each device's row exists from its first message on.
    if seen:
        insert_new(conn, fleet_devices, [{"device_id": d, "online": False,
                                          "last_seen": seen[d], "data_paused": False}
                                         for d in sorted(seen)])


def _write_devices(conn: Connection, seen: dict[str, datetime], signals: dict[str, float],
                   changes: dict[str, dict]) -> None:
    # Every change to the batch's devices' rows in one statement, in device order (see
    # FleetStore._take_all): last_seen only moves forward, a column a device's messages did
    # not change (None here) keeps its value.
    if not seen:
        return
    columns = sorted({"signal"} | {c for values in changes.values() for c in values})
    rows = []
    for device_id in sorted(seen):
        values = changes.get(device_id, {})
        row = {"device_id": device_id, "last_seen": seen[device_id]}
        row.update({c: values.get(c) for c in columns})
        row["signal"] = signals.get(device_id)
        rows.append(row)
    update_many(conn, fleet_devices, "device_id", rows, forward="last_seen", keep=True)


def _count_rejected(conn: Connection, r: Rejected, at: datetime) -> None:
    key = and_(fleet_rejected.c.source == r.source, fleet_rejected.c.reason == r.reason)
    insert_new(conn, fleet_rejected, [{"source": r.source, "reason": r.reason, "count": 0,
                                       "first": at, "last": at}])
    conn.execute(update(fleet_rejected).where(key).values(
        count=fleet_rejected.c.count + 1, last=at, detail=r.detail[:500]))


def _digest(payload: bytes) -> str:
    return hashlib.sha256(bytes(payload)).hexdigest()[:32]
