"""`musket boards` with one bad file among good ones: the good ones are listed, the bad one is
named with its reason, and the exit code says bad input."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from musket.boards import BOARDS_DIR_ENV, boards_dir, list_boards
from musket.cli import main
from musket.errors import ExitCode


def test_one_bad_board_file_does_not_hide_the_good_ones(tmp_path, monkeypatch):
    monkeypatch.delenv(BOARDS_DIR_ENV, raising=False)
    shipped = list_boards()
    for name in shipped:
        shutil.copy(boards_dir() / f"{name}.toml", tmp_path)
    (tmp_path / "broken-board.toml").write_text('chip = "esp32"\nheap = [unclosed\n')
    monkeypatch.setenv(BOARDS_DIR_ENV, str(tmp_path))

    listed = CliRunner().invoke(main, ["boards", "--json"])
    assert listed.exit_code == ExitCode.BAD_INPUT, listed.output
    assert [board["name"] for board in json.loads(listed.stdout)] == shipped
    errors = listed.stderr.splitlines()
    assert len(errors) == 2, listed.stderr
    assert errors[0].startswith("error: broken-board.toml: invalid TOML")
    assert errors[1] == "hint: fix or remove the board files named above"
    assert "Traceback" not in listed.output

    table = CliRunner().invoke(main, ["boards"])
    assert table.exit_code == ExitCode.BAD_INPUT
    for name in shipped:
        assert name in table.stdout
    assert "broken-board" not in table.stdout
