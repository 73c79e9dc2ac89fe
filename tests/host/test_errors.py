"""Exit codes are data with one owner (musket.errors): each kind of error has its own code, and
docs/errors.md documents exactly that table."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from musket import errors
from musket.cli import main
from musket.errors import EXIT_MEANINGS, ExitCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
KINDS = {errors.BadInput: ExitCode.BAD_INPUT, errors.UnitSilent: ExitCode.UNIT_SILENT,
         errors.Refused: ExitCode.REGISTRY_REFUSED, errors.Unreachable: ExitCode.UNREACHABLE,
         errors.SchemaMismatch: ExitCode.SCHEMA,
         errors.DeviceReportedErrors: ExitCode.DEVICE_ERRORS}


def test_the_documented_table_is_the_code_table():
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+) \|$", DOC.read_text(encoding="utf-8"),
                      re.MULTILINE)
    assert [(int(code), name, meaning) for code, name, meaning in rows] == [
        (int(code), code.name, meaning) for code, meaning in EXIT_MEANINGS.items()]
    assert set(EXIT_MEANINGS) == set(ExitCode)


def test_every_kind_has_its_own_code():
    assert len(set(KINDS.values())) == len(KINDS)
    for kind, code in KINDS.items():
        assert kind.exit_code == code
    assert ExitCode.USAGE == click.UsageError.exit_code


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_cli_prints_message_and_hint_and_exits_with_the_code(kind, monkeypatch):
    def raising(*args, **kwargs):
        raise kind("the message", hint="the next step")

    monkeypatch.setattr("musket.boards.list_boards", raising)
    result = CliRunner().invoke(main, ["boards"])
    assert result.exit_code == KINDS[kind]
    assert result.stderr.splitlines() == ["error: the message", "hint: the next step"]
    assert result.stdout == ""
