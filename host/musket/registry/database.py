"""Where the registry lives and how it is opened: a SQLite file or a PostgreSQL URL, brought to
the newest schema by the migrations shipped in this package."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from musket.errors import MusketError

DEFAULT_FILE = "musket-registry.sqlite"
ENV_VAR = "MUSKET_REGISTRY"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Stations sharing one SQLite file wait this long for another station's transaction.
SQLITE_BUSY_TIMEOUT_S = 30


class RegistryError(MusketError):
    """Root of the registry's errors: a database that cannot be opened, refused input."""


def resolve(location: str | os.PathLike[str] | None = None) -> str:
    """The SQLAlchemy URL for `location`: a database URL, a SQLite file path, or (None) the
    MUSKET_REGISTRY environment variable, else ./musket-registry.sqlite."""
    if location is None:
        location = os.environ.get(ENV_VAR) or DEFAULT_FILE
    text = os.fspath(location)
    if "://" not in text:
        return "sqlite:///" + str(Path(text).expanduser().resolve())
    try:
        url = make_url(text)
    except ArgumentError as e:
        raise RegistryError(f"registry URL {text!r}: {e}") from None
    # psycopg 3 is the driver musket installs; "postgresql://" alone would ask for psycopg2.
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def describe(url: str) -> str:
    """The URL as it may be shown: without a password."""
    return make_url(url).render_as_string(hide_password=True)


def connect(location: str | os.PathLike[str] | None = None) -> Engine:
    url = resolve(location)
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            event.listen(engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling would defer BEGIN to the first write, so
            # two stations could both read "free" before either wrote; BEGIN IMMEDIATE takes
            # the write lock when the transaction starts.
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, SQLAlchemyError, ImportError) as e:
        raise RegistryError(f"registry {describe(url)}: {e}") from None
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by the "begin" listener
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Brings the schema to the newest revision; returns (revision before, revision after)."""
    try:
        before = current_revision(engine)
        if before != head_revision():
            with engine.begin() as connection:
                command.upgrade(_config(connection), "head")
        return before, current_revision(engine) or ""
    except SQLAlchemyError as e:
        raise RegistryError(f"registry {describe(str(engine.url))}: migration failed: "
                            f"{_first_line(e)}") from None


def _first_line(error: Exception) -> str:
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]
