"""SQL the fleet's modules share, written once for SQLite and PostgreSQL.

On PostgreSQL a batch's rows go as one statement of one fixed text whatever their count: each
column is one array parameter (sent in binary), unnested into rows. A multi-row VALUES list
instead is new SQL text for every batch size, parsed again by the driver and the server, and
one with RETURNING and ON CONFLICT goes row by row, as does an executemany UPDATE; this is what
lets a batch of hundreds of messages (and their thousands of readings) be stored at thousands
of messages a second. SQLite, in process, takes the rows one by one at no round trip's cost.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, and_, bindparam, case, func, insert, update
from sqlalchemy.dialects import sqlite

IN_CHUNK = 500  # keys per IN (...) query: well under either database's bound parameters


def insert_new(conn: Connection, table, rows: list[dict]):
    """INSERT rows, skipping those whose key is taken (by this or another copy of the service);
    returns the result, whose rows are the keys inserted (RETURNING). Every row has the same
    keys."""
    if conn.dialect.name == "postgresql":
        keys = ", ".join(_quote(conn, c.name) for c in table.primary_key.columns)
        return _insert_arrays(conn, table, rows, f"ON CONFLICT DO NOTHING RETURNING {keys}")
    stmt = sqlite.insert(table).on_conflict_do_nothing()
    return conn.execute(stmt.returning(*table.primary_key.columns), rows)


def insert_many(conn: Connection, table, rows: list[dict]) -> None:
    """INSERT rows that take no key of another (the table numbers them); every row has the same
    keys."""
    if conn.dialect.name == "postgresql":
        _insert_arrays(conn, table, rows, "")
    else:
        conn.execute(insert(table), rows)


def update_many(conn: Connection, table, key: str, rows: list[dict],
                forward: str | None = None, keep: bool = False) -> None:
    """UPDATE the row whose `key` column is each row's `key` value with the row's other values;
    every row has the same keys. With `forward` (a column among them), that column only moves
    forward: with `keep`, it is set to the newer of the two and the rest still applies;
    without, the whole row is left alone unless the new value is newer. With `keep`, a None
    leaves the stored value as it is, so one statement writes rows that change different
    columns."""
    columns = [c for c in rows[0] if c != key]
    if conn.dialect.name == "postgresql":
        names = [key, *columns]
        target = conn.dialect.identifier_preparer.format_table(table)

        def new(c):  # the value column c gets
            old, value = f"{target}.{_quote(conn, c)}", f"v.{_quote(conn, c)}"
            if c == forward and keep:
                return f"GREATEST({old}, {value})"
            return f"COALESCE({value}, {old})" if keep else value

        sets = ", ".join(f"{_quote(conn, c)} = {new(c)}" for c in columns)
        where = f"{target}.{_quote(conn, key)} = v.{_quote(conn, key)}"
        if forward is not None and not keep:
            where += f" AND {target}.{_quote(conn, forward)} < v.{_quote(conn, forward)}"
        unnest, arrays = _arrays(conn, table, names, rows)
        conn.exec_driver_sql(
            f"UPDATE {target} SET {sets} FROM unnest({unnest}) "
            f"AS v({', '.join(_quote(conn, c) for c in names)}) WHERE {where}", arrays)
        return
    t = table.c

    def param(c):
        return bindparam(f"v_{c}", type_=t[c].type)

    def new_value(c):
        if c == forward and keep:
            return case((param(c) > t[c], param(c)), else_=t[c])
        return func.coalesce(param(c), t[c]) if keep else param(c)

    where = t[key] == bindparam(f"b_{key}", type_=t[key].type)
    if forward is not None and not keep:
        where = and_(where, t[forward] < param(forward))
    conn.execute(update(table).where(where).values({c: new_value(c) for c in columns}),
                 [{f"b_{key}": row[key], **{f"v_{c}": row[c] for c in columns}}
                  for row in rows])


def _insert_arrays(conn: Connection, table, rows: list[dict], tail: str):
    names = list(rows[0])
    unnest, arrays = _arrays(conn, table, names, rows)
    return conn.exec_driver_sql(
        f"INSERT INTO {conn.dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(_quote(conn, c) for c in names)}) SELECT * FROM unnest({unnest}) {tail}",
        arrays)


def _arrays(conn: Connection, table, names: list[str], rows: list[dict]) -> tuple[str, dict]:
    # -> the unnest(...) arguments, typed as the columns are, and their parameters: a list
    # of each column's values, through the column type's own bind processing if it has one.
    dialect = conn.dialect
    args, arrays = [], {}
    for n, name in enumerate(names):
        column = table.c[name]
        bind = column.type.bind_processor(dialect)
        values = [row[name] for row in rows]
        arrays[f"a{n}"] = values if bind is None else [bind(v) for v in values]
        args.append(f"%(a{n})b::{column.type.compile(dialect=dialect)}[]")
    return ", ".join(args), arrays


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def aware(t: datetime | None) -> datetime | None:
    """A stored time as UTC (SQLite hands back naive datetimes, written as UTC)."""
    return t if t is None or t.tzinfo else t.replace(tzinfo=UTC)
