"""Where the registry lives and how it is opened: a SQLite file or a PostgreSQL URL. Only
`migrate` (run by `musket registry migrate`) creates or changes a schema; everything else checks
that the schema is this musket's and says what to run when it is not."""

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

from musket.errors import BadInput, MusketError, Refused, SchemaMismatch, Unreachable

DEFAULT_FILE = "musket-registry.sqlite"
ENV_VAR = "MUSKET_REGISTRY"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Stations sharing one SQLite file wait this long for another station's transaction.
SQLITE_BUSY_TIMEOUT_S = 30


class RegistryError(MusketError):
    """Root of the registry's errors: a database that cannot be opened, refused input."""


class RegistryRefused(RegistryError, Refused):
    """The registry refused a change: an unknown SIM, a duplicate, a transition not allowed."""


class RegistryInputError(RegistryError, BadInput):
    """A value given to the registry cannot be used (a missing reason, a malformed ICCID)."""


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
        raise RegistryInputError(f"registry URL {text!r}: {e}") from None
    # psycopg 3 is the driver musket installs; "postgresql://" alone would ask for psycopg2.
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def describe(url: str) -> str:
    """The URL as it may be shown: without a password."""
    return make_url(url).render_as_string(hide_password=True)


def connect(location: str | os.PathLike[str] | None = None, *, create: bool = False
            ) -> Engine:
    """An engine for the registry at `location`. A SQLite file that does not exist is created
    only with `create` (by `migrate`): a mistyped path must not leave an empty database."""
    url = resolve(location)
    if not create:
        _check_sqlite_file(url)
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
        raise RegistryInputError(f"registry {describe(url)}: {e}") from None
    return engine


def _check_sqlite_file(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    if not Path(parsed.database).is_file():
        raise SchemaMismatch(f"no registry at {parsed.database}",
                             hint=f"run `musket registry migrate --registry {parsed.database}` "
                                  "to create it, or give the right --registry")


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
    try:
        connection = engine.connect()
    except SQLAlchemyError as e:
        where = describe(str(engine.url))
        raise Unreachable(f"cannot reach the registry at {where}: {_first_line(e)}",
                          hint="check that the database server runs and that the URL, user "
                               "and network are right") from None
    with connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Raises SchemaMismatch, with the command to run, unless the schema is this musket's."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    where = describe(str(engine.url))
    known = {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if current is None:
        raise SchemaMismatch(f"registry {where} has no schema yet (this musket needs revision "
                             f"{head})", hint=f"run `musket registry migrate --registry "
                                              f"{_location_arg(where)}`")
    if current not in known:
        raise SchemaMismatch(f"registry {where}: schema revision {current} is newer than this "
                             f"musket knows (it needs {head})",
                             hint="upgrade musket on this station to the version that migrated "
                                  "the registry")
    raise SchemaMismatch(f"registry {where}: schema revision {current}, this musket needs {head}",
                         hint=f"run `musket registry migrate --registry {_location_arg(where)}` "
                              "(once, from one station)")


def _location_arg(where: str) -> str:
    # The shown URL back as the --registry value a person would type: a SQLite file's path.
    return where.removeprefix("sqlite:///")


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Brings the schema to the newest revision; returns (revision before, revision after)."""
    before = current_revision(engine)
    try:
        if before != head_revision():
            with engine.begin() as connection:
                command.upgrade(_config(connection), "head")
        return before, current_revision(engine) or ""
    except SQLAlchemyError as e:
        raise RegistryError(f"registry {describe(str(engine.url))}: migration failed: "
                            f"{_first_line(e)}") from None


def _first_line(error: Exception) -> str:
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]
