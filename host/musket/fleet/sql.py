"""SQL the fleet's modules share, written once for SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

IN_CHUNK = 500  # keys per IN (...) query: well under either database's bound parameters


def insert_new(conn: Connection, table, rows: list[dict]):
    """INSERT rows, skipping those whose key is taken (by this or another copy of the service);
    returns the result, whose rows are the keys inserted (RETURNING)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).on_conflict_do_nothing()
    return conn.execute(stmt.returning(*table.primary_key.columns), rows)


def aware(t: datetime | None) -> datetime | None:
    """A stored time as UTC (SQLite hands back naive datetimes, written as UTC)."""
    return t if t is None or t.tzinfo else t.replace(tzinfo=UTC)
