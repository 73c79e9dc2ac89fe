"""The registry: devices, their SIMs and modems, credentials and an append-only audit log.

Every change is written with an audit record in the same transaction, so the log and the data
cannot disagree. The registry stores the broker's hash of each device's secret, never the
secret, and never returns the hash to a caller outside this package except as broker lines.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from typing import IO

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from musket import broker
from musket.errors import Unreachable
from musket.identity import SIM_STATES, IdentityError, check_iccid
from musket.registry import database, simcsv
from musket.registry.database import RegistryError, RegistryInputError, RegistryRefused
from musket.registry.records import (
    Actor,
    AuditEntry,
    BindingRecord,
    DeviceRecord,
    SimRecord,
    utc,
)
from musket.registry.schema import audit, bindings, credentials, devices, sims

# SIM states a person may set with `musket registry sim-state`, from each state. "bound" is set
# by provisioning only; a SIM in a device is bound, active or suspended, a SIM outside one is in
# inventory, suspended or retired (see _IN_DEVICE), and retired is for good.
MANUAL_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "inventory": ("suspended", "retired"),
    "bound": ("active", "suspended"),
    "active": ("suspended",),
    "suspended": ("inventory", "active", "retired"),
    "retired": (),
}
_IN_DEVICE = ("bound", "active", "suspended")
_OUT_OF_DEVICE = ("inventory", "suspended", "retired")
# Rows of a SIM list per INSERT into the staging table (one executemany): large enough that
# the round trips do not count, small enough that a batch is a few hundred KB.
_STAGING_BATCH = 2000


def now() -> datetime:
    return datetime.now(UTC)


def record_audit(conn: Connection, actor: Actor, action: str, subject: str,
                 changes: dict) -> None:
    """Appends one audit record. `changes` is JSON-able and never holds a secret."""
    conn.execute(insert(audit).values(
        at=now(), station=actor.station, operator=actor.operator, action=action,
        subject=subject, changes=json.dumps(changes)))


def default_actor(station: str | None = None, operator: str | None = None) -> Actor:
    """The station defaults to this machine's name, the operator to the login name."""
    if not station:
        station = os.uname().nodename or "unknown-station"
    if not operator:
        operator = os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown-operator"
    return Actor(station[:64], operator[:64])


class Registry:
    """One registry database. `Registry.open()` connects and checks that the schema is this
    musket's; `migrate=True` brings it up to date first (creating a SQLite file if need be)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, location: str | os.PathLike[str] | None = None, *,
             migrate: bool = False) -> Registry:
        registry = cls(database.connect(location, create=migrate))
        try:
            if migrate:
                database.migrate(registry.engine)
            else:
                database.check_schema(registry.engine)
        except BaseException:
            registry.close()
            raise
        return registry

    @property
    def url(self) -> str:
        """Where the registry is, without a password."""
        return database.describe(str(self.engine.url))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def transaction(self):
        """One transaction: committed when the block ends, rolled back if it raises."""
        return self._connection(self.engine.begin)

    def _reading(self):
        return self._connection(self.engine.connect)

    @contextmanager
    def _connection(self, opener) -> Iterator[Connection]:
        try:
            with opener() as conn:
                yield conn
        except OperationalError as e:
            # The server went away, or a lock was not granted in time: worth a retry.
            raise Unreachable(f"registry {self.url}: {database._first_line(e)}") from None
        except SQLAlchemyError as e:
            raise RegistryError(f"registry {self.url}: {database._first_line(e)}") from None

    # -- SIMs ------------------------------------------------------------------------------

    def import_sims(self, path: str | os.PathLike[str], actor: Actor) -> simcsv.ImportSummary:
        """Imports the vendor's SIM list; every row or none. Returns what was imported (the
        count, the count per state, the first and last ICCID).

        The file is read one row at a time and its good rows go, a batch at a time, into a
        temporary table in the import's transaction; ICCIDs repeated in the file and ICCIDs
        the registry holds are then found in SQL. So the memory an import takes does not
        grow with the file. Raises SimImportError for a file with bad rows or repeats, and
        SimsAlreadyKnown when its only fault is ICCIDs the registry holds, each naming every
        problem by line (the first simcsv.MAX_PROBLEMS_SHOWN, and how many more)."""
        summary = simcsv.ImportSummary()
        # The file is opened, and its header checked, before the transaction takes the
        # registry's write lock.
        with simcsv.SimReader(path) as reader, self.transaction() as conn:
            staging = _sim_staging_table()
            staging.create(conn)
            rows = iter(reader)
            while batch := list(islice(rows, _STAGING_BATCH)):
                conn.execute(insert(staging), [
                    {"line": r.line, "iccid": r.iccid, "plan": r.plan, "state": r.state}
                    for r in batch])
                for row in batch:
                    summary.add(row)
            Index(f"{staging.name}_iccid", staging.c.iccid).create(conn)
            problems = reader.problems
            problems.add_found(*_repeated_in_file(conn, staging))
            bad_file = bool(problems)
            problems.add_found(*_already_known(conn, staging))
            if problems:
                kind = simcsv.SimImportError if bad_file else simcsv.SimsAlreadyKnown
                raise kind(reader.source, problems.shown, problems.count)
            if not summary.count:
                raise simcsv.SimImportError(reader.source, ["no SIMs in the file (only a "
                                                            "header)"])
            conn.execute(insert(sims).from_select(
                ["iccid", "plan", "state", "updated"],
                select(staging.c.iccid, staging.c.plan, staging.c.state,
                       literal(now(), sims.c.updated.type))))
            # Dropped here, as a rollback drops it: the pool hands this connection out again.
            staging.drop(conn)
            record_audit(conn, actor, "sim-import", reader.source,
                         {"sims": summary.count, "states": summary.states,
                          "first": summary.first, "last": summary.last})
        return summary

    def sims(self, state: str | None = None) -> list[SimRecord]:
        query = (select(sims, devices.c.device_id)
                 .join(devices, devices.c.iccid == sims.c.iccid, isouter=True)
                 .order_by(sims.c.iccid))
        if state is not None:
            query = query.where(sims.c.state == _known_state(state))
        with self._reading() as conn:
            return [_sim_record(row) for row in conn.execute(query)]

    def sim(self, iccid: str) -> SimRecord | None:
        with self._reading() as conn:
            return sim_record(conn, iccid)

    def set_sim_state(self, iccid: str, state: str, reason: str, actor: Actor) -> SimRecord:
        """Moves a SIM to `state` (see MANUAL_TRANSITIONS), audited with the reason."""
        iccid = _iccid_arg(iccid)
        state = _known_state(state)
        if not reason or not reason.strip():
            raise RegistryInputError("a reason is required for a SIM state change")
        with self.transaction() as conn:
            sim = sim_record(conn, iccid)
            if sim is None:
                raise RegistryRefused(f"SIM {iccid} is not in the registry")
            if sim.state == state:
                raise RegistryRefused(f"SIM {iccid} is already {state}")
            allowed = MANUAL_TRANSITIONS[sim.state]
            if state not in allowed:
                options = ", ".join(allowed) if allowed else "none, it is retired for good"
                raise RegistryRefused(f"SIM {iccid}: {sim.state} → {state} is not allowed "
                                      f"(from {sim.state}: {options})")
            if sim.device_id and state not in _IN_DEVICE:
                raise RegistryRefused(f"SIM {iccid} is in device {sim.device_id}: to take it "
                                      "out, provision the device with its new SIM (`musket "
                                      "provision --rebind --reason ...`)")
            if not sim.device_id and state not in _OUT_OF_DEVICE:
                raise RegistryRefused(f"SIM {iccid} is in no device: it can only be "
                                      f"{', '.join(_OUT_OF_DEVICE)}")
            set_sim_state(conn, iccid, state)
            record_audit(conn, actor, "sim-state", iccid,
                         {"state": [sim.state, state], "reason": reason.strip()})
            sim.state = state
        return sim

    # -- devices ---------------------------------------------------------------------------

    def devices(self) -> list[DeviceRecord]:
        with self._reading() as conn:
            return [_device_record(row) for row in conn.execute(
                _device_query().order_by(devices.c.created, devices.c.device_id))]

    def device(self, key: str) -> DeviceRecord | None:
        """The device with this device ID, IMEI or (current) ICCID, with its binding history."""
        key = key.strip()
        with self._reading() as conn:
            row = conn.execute(_device_query().where(or_(
                devices.c.device_id == key, devices.c.imei == key,
                devices.c.iccid == key))).first()
            if row is None:
                return None
            record = _device_record(row)
            record.bindings = [BindingRecord(**dict(b._mapping)) for b in conn.execute(
                select(bindings.c.device_id, bindings.c.iccid, bindings.c.imei,
                       bindings.c.bound, bindings.c.unbound, bindings.c.reason)
                .where(bindings.c.device_id == record.device_id).order_by(bindings.c.id))]
            for binding in record.bindings:
                binding.bound = utc(binding.bound)
                binding.unbound = utc(binding.unbound)
        return record

    def write_bindings_csv(self, out: IO[str]) -> int:
        """The current ICCID ↔ IMEI ↔ device ID bindings as CSV; returns the number of rows."""
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["iccid", "imei", "device_id"])
        with self._reading() as conn:
            rows = conn.execute(select(devices.c.iccid, devices.c.imei, devices.c.device_id)
                                .where(devices.c.iccid.is_not(None))
                                .order_by(devices.c.device_id)).all()
        writer.writerows(rows)
        return len(rows)

    def broker_users(self) -> list[tuple[str, str]]:
        """(username, broker hash of the secret) for every device that has credentials."""
        with self._reading() as conn:
            return [(r.username, r.secret_hash) for r in conn.execute(
                select(credentials.c.username, credentials.c.secret_hash)
                .order_by(credentials.c.username))]

    def export_broker(self, passwd_path: str | os.PathLike[str],
                      acl_path: str | os.PathLike[str]) -> int:
        """Writes the Mosquitto password file (the stored hashes: the secrets are not kept)
        and the ACL that confines each device to its topic prefix; returns the device count.
        Each file is written to a temporary name and renamed, so the broker never reads half
        of one; the password file is readable by its owner only."""
        users = self.broker_users()
        try:
            passwd = broker.render_hashed_password_file(
                (broker.check_device_id(user), secret_hash) for user, secret_hash in users)
            acl = broker.render_acl(user for user, _ in users)
        except broker.BrokerError as e:
            raise RegistryError(f"broker export: {e}") from None
        _write_atomically(passwd_path, passwd, 0o600)
        _write_atomically(acl_path, acl, 0o644)
        return len(users)

    def secret_hash(self, username: str) -> str | None:
        with self._reading() as conn:
            return conn.execute(select(credentials.c.secret_hash)
                                .where(credentials.c.username == username)).scalar()

    # -- audit -----------------------------------------------------------------------------

    def audit(self, subject: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        """Audit records, oldest first; the newest `limit` when given."""
        query = select(audit).order_by(audit.c.id.desc())
        if subject:
            query = query.where(audit.c.subject == subject.strip())
        if limit:
            query = query.limit(limit)
        with self._reading() as conn:
            rows = list(conn.execute(query))
        return [AuditEntry(id=r.id, at=utc(r.at), station=r.station, operator=r.operator,
                           action=r.action, subject=r.subject, changes=json.loads(r.changes))
                for r in reversed(rows)]

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        with self._reading() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in (devices, sims, bindings, credentials, audit)}


# -- helpers shared with binding.py ----------------------------------------------------------


def sim_record(conn: Connection, iccid: str) -> SimRecord | None:
    row = conn.execute(select(sims, devices.c.device_id)
                       .join(devices, devices.c.iccid == sims.c.iccid, isouter=True)
                       .where(sims.c.iccid == iccid)).first()
    return None if row is None else _sim_record(row)


def set_sim_state(conn: Connection, iccid: str, state: str, **values) -> None:
    conn.execute(update(sims).where(sims.c.iccid == iccid)
                 .values(state=state, updated=now(), **values))


def _device_query():
    return (select(devices, sims.c.state.label("sim_state"),
                   credentials.c.issued.label("credentials_issued"))
            .join(sims, sims.c.iccid == devices.c.iccid, isouter=True)
            .join(credentials, credentials.c.username == devices.c.device_id, isouter=True))


def _device_record(row) -> DeviceRecord:
    m = row._mapping
    return DeviceRecord(device_id=m["device_id"], imei=m["imei"], iccid=m["iccid"],
                        imsi=m["imsi"], board=m["board"], chip_id=m["chip_id"],
                        created=utc(m["created"]), sim_state=m["sim_state"],
                        credentials_issued=utc(m["credentials_issued"]))


def _sim_record(row) -> SimRecord:
    m = row._mapping
    return SimRecord(iccid=m["iccid"], plan=m["plan"], state=m["state"], imsi=m["imsi"],
                     updated=utc(m["updated"]), device_id=m["device_id"])


def _sim_staging_table() -> Table:
    """The good rows of a SIM list being imported, with their line in the file: a temporary
    table, seen by the import's connection only. Made afresh for each import (its index is
    added once the rows are in)."""
    return Table(
        "sim_import_staging", MetaData(),
        Column("line", Integer, primary_key=True, autoincrement=False),
        Column("iccid", String(20), nullable=False),
        Column("plan", String(64), nullable=False),
        Column("state", String(16), nullable=False),
        prefixes=["TEMPORARY"])


def _repeated_in_file(conn: Connection, staging: Table) -> tuple[list[tuple[int, str]], int]:
    """(the first problems by line, how many in all) for ICCIDs that appear again in the
    file: every line after an ICCID's first."""
    s = staging.c
    count = conn.execute(select(func.count() - func.count(s.iccid.distinct()))
                         .select_from(staging)).scalar_one()
    if not count:
        return [], 0
    first = (select(s.iccid, func.min(s.line).label("line")).group_by(s.iccid)
             .having(func.count() > 1).subquery())
    found = conn.execute(select(s.line, s.iccid, first.c.line.label("first"))
                         .select_from(staging.join(first, first.c.iccid == s.iccid))
                         .where(s.line > first.c.line)
                         .order_by(s.line).limit(simcsv.MAX_PROBLEMS_SHOWN))
    return [(r.line, f"line {r.line}: ICCID {r.iccid} appears again (first on line {r.first})")
            for r in found], count


def _already_known(conn: Connection, staging: Table) -> tuple[list[tuple[int, str]], int]:
    """(the first problems by line, how many in all) for the file's ICCIDs that the registry
    already holds."""
    known = staging.join(sims, sims.c.iccid == staging.c.iccid)
    count = conn.execute(select(func.count()).select_from(known)).scalar_one()
    if not count:
        return [], 0
    found = conn.execute(select(staging.c.line, staging.c.iccid, sims.c.state)
                         .select_from(known).order_by(staging.c.line)
                         .limit(simcsv.MAX_PROBLEMS_SHOWN))
    return [(r.line, f"line {r.line}: ICCID {r.iccid} is already in the registry (state "
                     f"{r.state})") for r in found], count


def _write_atomically(path: str | os.PathLike[str], text: str, mode: int) -> None:
    try:
        broker.write_text_atomically(path, text, mode)
    except broker.BrokerError as e:
        raise RegistryError(str(e)) from None


def _known_state(state: str) -> str:
    state = state.strip().lower()
    if state not in SIM_STATES:
        raise RegistryInputError(f"unknown SIM state {state!r} (expected one of: "
                                 f"{', '.join(SIM_STATES)})")
    return state


def _iccid_arg(text: str) -> str:
    try:
        return check_iccid(text)
    except IdentityError as e:
        raise RegistryInputError(str(e)) from None
