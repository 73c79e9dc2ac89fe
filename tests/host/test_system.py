"""The system programs musket needs: found where Debian puts them, and a machine that lacks one
gets one line naming the command to run (or, as root, the install), never a half-run suite."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from musket import system

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "host" / "musket" / "system.py"
ABSENT = system.SystemTool("frobnicate", "frobnicator", ("/nonexistent/*/bin",), "nothing")


@pytest.mark.parametrize("program", [tool.program for tool in system.TOOLS])
def test_every_listed_program_is_found(program):
    # `make test` installed them: each must be found, off PATH too (Debian's sbin and
    # versioned folders are not on every user's PATH).
    path = system.require(program)
    assert path.name == program and os.access(path, os.X_OK)


def test_a_program_off_path_is_found_in_its_debian_folder(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    for tool in system.TOOLS:
        found = system.find(tool.program)
        assert found is not None, f"{tool.program} not found in {tool.folders}"
        assert any(found.parent.match(pattern) for pattern in tool.folders)


def test_a_missing_program_names_its_package():
    with pytest.raises(system.MissingTool, match="apt-get install -y frobnicate"):
        system.require("frobnicate")


def test_as_a_user_a_missing_package_stops_with_one_line():
    out = io.StringIO()
    assert system.ensure((ABSENT,), is_root=False, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines == ["musket needs system packages that are missing (frobnicator): run "
                     "`sudo apt-get install -y frobnicator`, then run make again"]


def test_nothing_missing_says_nothing_and_succeeds():
    out = io.StringIO()
    assert system.ensure(system.TOOLS, is_root=False, out=out) == 0
    assert out.getvalue() == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_the_script_runs_as_a_plain_user_with_the_system_python():
    # What `make` runs (its $(PYTHON), python3 on PATH) before any virtual environment
    # exists: the standard library only.
    # The script comes on standard input: a clone under a private folder is not readable by
    # the other user, and what is checked here is what the script imports, not file modes.
    done = subprocess.run(["runuser", "-u", "nobody", "--", "python3", "-I", "-"],
                          input=SCRIPT.read_text(), capture_output=True, text=True, timeout=60,
                          cwd="/")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installing" not in done.stdout


def test_the_setup_page_names_every_package():
    page = (REPO / "docs" / "setup.md").read_text(encoding="utf-8")
    for tool in system.TOOLS:
        assert f"| `{tool.package}` |" in page, f"docs/setup.md does not list {tool.package}"
