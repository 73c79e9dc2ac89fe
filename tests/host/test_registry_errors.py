"""What a station script sees when the registry cannot be used: a missing file, a schema from
another musket, a database server that does not answer, a refused change. Each is one line, a
hint that says what to run, and an exit code of its own; and nothing is changed or created."""

from __future__ import annotations

import shutil
import sqlite3
import textwrap

import pytest
from click.testing import CliRunner

from musket.cli import main
from musket.errors import ExitCode
from musket.registry import database

# Nothing listens on port 1: the connection is refused at once.
UNREACHABLE_URL = "postgresql://musket:not-shown@127.0.0.1:1/musket"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_a_read_only_command_on_a_missing_file_creates_nothing(tmp_path):
    path = tmp_path / "typo" / "registry.sqlite"
    path.parent.mkdir()
    result = invoke("registry", "list", "--registry", str(path))
    assert result.exit_code == ExitCode.SCHEMA, result.output
    assert error_lines(result) == [
        f"error: no registry at {path}",
        f"hint: run `musket registry migrate --registry {path}` to create it, or give the "
        "right --registry"]
    assert list(path.parent.iterdir()) == [], "a read-only command created a file"


def test_migrate_creates_the_registry_then_list_works(tmp_path):
    path = tmp_path / "registry.sqlite"
    first = invoke("registry", "migrate", "--registry", str(path))
    assert first.exit_code == 0, first.output
    assert f"schema empty → {database.head_revision()}" in first.output
    listed = invoke("registry", "list", "--registry", str(path), "--json")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.strip() == "[]"


@pytest.fixture
def next_release(tmp_path, monkeypatch):
    """Call it to become the next musket release: this musket's migrations plus one more
    revision. A registry migrated before the call then holds an older schema."""
    migrations = tmp_path / "migrations"
    shutil.copytree(database.MIGRATIONS, migrations,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "0099_next.py").write_text(textwrap.dedent('''\
        """A later schema: one more column."""
        import sqlalchemy as sa
        from alembic import op

        revision = "0099"
        down_revision = "%s"
        branch_labels = None
        depends_on = None


        def upgrade():
            op.add_column("devices", sa.Column("note", sa.Text(), nullable=True))
        ''' % database.head_revision()))
    return lambda: monkeypatch.setattr(database, "MIGRATIONS", migrations)


def test_an_older_schema_is_refused_with_the_migrate_hint_and_left_as_it_was(tmp_path,
                                                                            next_release):
    path = tmp_path / "registry.sqlite"
    assert invoke("registry", "migrate", "--registry", str(path)).exit_code == 0
    current = database.head_revision()
    next_release()
    before = path.read_bytes()

    result = invoke("registry", "list", "--registry", str(path))
    assert result.exit_code == ExitCode.SCHEMA, result.output
    lines = error_lines(result)
    assert lines[0] == (f"error: registry sqlite:///{path}: schema revision {current}, this "
                        "musket needs 0099")
    assert lines[1] == (f"hint: run `musket registry migrate --registry {path}` (once, from "
                        "one station)")
    assert path.read_bytes() == before, "a refused command changed the registry"

    assert invoke("registry", "migrate", "--registry", str(path)).exit_code == 0
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(devices)")}
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert "note" in columns and revision == "0099"
    assert invoke("registry", "list", "--registry", str(path)).exit_code == 0


def test_a_schema_from_a_newer_musket_asks_for_an_upgrade(tmp_path):
    path = tmp_path / "registry.sqlite"
    assert invoke("registry", "migrate", "--registry", str(path)).exit_code == 0
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    result = invoke("registry", "list", "--registry", str(path))
    assert result.exit_code == ExitCode.SCHEMA
    assert "newer than this musket knows" in result.stderr
    assert "hint: upgrade musket" in result.stderr


@pytest.mark.parametrize("command", [["list"], ["migrate"], ["audit"]])
def test_an_unreachable_database_says_so_and_hides_the_password(command):
    result = invoke("registry", *command, "--registry", UNREACHABLE_URL)
    assert result.exit_code == ExitCode.UNREACHABLE, result.output
    lines = error_lines(result)
    assert lines[0].startswith("error: cannot reach the registry at "
                               "postgresql+psycopg://musket:***@127.0.0.1:1/musket: ")
    assert "migration failed" not in result.stderr
    assert "not-shown" not in result.output
    assert lines[1].startswith("hint: check that the database server runs")


def test_refusals_and_bad_values_have_their_own_codes(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSKET_REGISTRY", str(tmp_path / "registry.sqlite"))
    assert invoke("registry", "migrate").exit_code == 0
    unknown = invoke("registry", "sim-state", "8949019237115905561", "suspended",
                     "--reason", "hold")
    assert unknown.exit_code == ExitCode.REGISTRY_REFUSED, unknown.output
    assert error_lines(unknown) == ["error: SIM 8949019237115905561 is not in the registry"]
    malformed = invoke("registry", "sim-state", "8949019237115905562", "suspended",
                       "--reason", "hold")
    assert malformed.exit_code == ExitCode.BAD_INPUT, malformed.output
    assert "check digit" in malformed.stderr
    missing = invoke("registry", "show", "msk-nothere")
    assert missing.exit_code == ExitCode.REGISTRY_REFUSED
