"""The `musket` command through click's test runner: help texts with examples, `sim run`'s
JSON summary under both interpreters, same seed → same run, one clear error per bad input,
`boards --json`, a docs section for every command and no broken link in the docs."""

from __future__ import annotations

import difflib
import json
import re
import signal
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from musket.boards import BOARDS_DIR_ENV, load_board
from musket.cli import main

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
SHIPPED_BOARDS = ["esp32-a7670", "esp32-sim7080g", "esp32s3-bg95"]
DAY_S = 86400
SUMMARY_FIELDS = {
    "interpreter", "board", "seed", "virtual_seconds", "wall_seconds", "boots",
    "heap_peak_bytes", "errors", "flash_writes", "exit_reason", "console_log",
}


def command_paths(group: click.Group = main, path: tuple[str, ...] = ("musket",)
                  ) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command under `group`, groups included, as (("musket", "sim", "run"), command)."""
    found = [(path, group)]
    ctx = click.Context(group, info_name=path[-1])
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            found += command_paths(command, path + (name,))
        else:
            found.append((path + (name,), command))
    return found


ALL_COMMANDS = command_paths()
LEAF_COMMANDS = [(p, c) for p, c in ALL_COMMANDS if not isinstance(c, click.Group)]


def _ids(entries):
    return [" ".join(path) for path, _ in entries]


@pytest.fixture(autouse=True)
def repo_boards_and_signals(monkeypatch):
    """The repository's boards; and `sim run`'s SIGTERM handler does not outlive the test."""
    monkeypatch.delenv(BOARDS_DIR_ENV, raising=False)
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run_json(runner: CliRunner, *args: str) -> dict:
    result = runner.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, f"exit {result.exit_code}:\n{result.output}"
    return json.loads(result.stdout)


# --- help ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "command"), ALL_COMMANDS, ids=_ids(ALL_COMMANDS))
def test_help_has_a_text_and_an_example(runner, path, command):
    result = runner.invoke(main, [*path[1:], "--help"], prog_name="musket")
    assert result.exit_code == 0, result.output
    summary = command.get_short_help_str(limit=200)
    assert summary.strip(), f"`{' '.join(path)}` has no help text"
    assert summary in " ".join(result.output.split())
    head, example, rest = result.output.partition("Example")
    assert example, f"`{' '.join(path)} --help` has no Example section:\n{result.output}"
    assert " ".join(path) in rest, f"the example does not show `{' '.join(path)}` in use"


# --- sim run ------------------------------------------------------------------------------


def test_sim_run_for_a_day_prints_a_sane_json_summary(runner, tmp_path, interpreter):
    workdir = tmp_path / "run"
    summary = run_json(runner, "sim", "run", "--for", "1d", "--json",
                       "--interpreter", interpreter, "--workdir", str(workdir))
    assert SUMMARY_FIELDS <= summary.keys()
    assert summary["interpreter"] == interpreter
    assert summary["board"] == "esp32-sim7080g"
    assert summary["seed"] == 0
    assert summary["virtual_seconds"] == DAY_S
    assert 0 < summary["wall_seconds"] < DAY_S
    assert isinstance(summary["boots"], int) and summary["boots"] >= 1
    assert summary["errors"] == []
    assert isinstance(summary["flash_writes"], int) and summary["flash_writes"] >= 0
    assert summary["exit_reason"] == "span_end"
    assert Path(summary["console_log"]).parent == workdir
    assert Path(summary["console_log"]).read_text(errors="replace").strip()
    heap = summary["heap_peak_bytes"]
    if interpreter == "micropython":
        assert type(heap) is int and 0 < heap < load_board("esp32-sim7080g").heap
    else:
        assert heap is None


def test_same_seed_gives_the_same_console_log(runner, tmp_path, interpreter):
    # Where a run keeps its files is the host's business: it must not change the run.
    logs = []
    for name in ("run", "run-kept-in-a-folder-with-a-much-longer-name-than-the-first"):
        summary = run_json(runner, "sim", "run", "--for", "6h", "--seed", "1234", "--json",
                           "--interpreter", interpreter, "--workdir", str(tmp_path / name))
        assert summary["seed"] == 1234
        logs.append(Path(summary["console_log"]).read_bytes())
    assert logs[0], "the console log is empty"
    first, second = (log.decode(errors="replace").splitlines() for log in logs)
    assert first == second, "\n".join(difflib.unified_diff(first, second, "first", "second",
                                                            lineterm="", n=0))


@pytest.mark.parametrize(("args", "expected"), [
    (["--for", "banana"], ["--for", "banana"]),
    (["--heap", "12Q"], ["--heap", "12Q"]),
    (["--board", "no-such-board"], ["no-such-board", *SHIPPED_BOARDS]),
    (["--interpreter", "jython"], ["--interpreter", "jython", "micropython", "cpython"]),
], ids=["duration", "size", "board", "interpreter"])
def test_bad_input_is_one_clear_error(runner, tmp_path, args, expected):
    result = runner.invoke(main, ["sim", "run", "--workdir", str(tmp_path / "run"), *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), "an error, not a crash"
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    for word in expected:
        assert word in message, f"{word!r} missing from the error:\n{result.stderr}"
    assert not (tmp_path / "run" / "flash.bin").exists(), "nothing runs on bad input"


# --- boards -------------------------------------------------------------------------------


def test_boards_json_lists_the_shipped_boards(runner):
    result = runner.invoke(main, ["boards", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    boards = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert set(SHIPPED_BOARDS) <= boards.keys()
    for name in SHIPPED_BOARDS:
        assert boards[name]["chip"] in ("esp32", "esp32s3")
        assert boards[name]["flash_size"] >= 4 * 1024 * 1024
        assert boards[name]["modem"] and boards[name]["description"]
        assert boards[name]["heap"] == load_board(name).heap


# --- docs ---------------------------------------------------------------------------------


def doc_pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def markdown_blocks(text: str) -> list[tuple[bool, str]]:
    """The text split into (is_fenced_code, lines) runs; a fence line belongs to its code run."""
    runs: list[tuple[bool, list[str]]] = []
    fence = None
    for line in text.splitlines():
        marker = re.match(r" {0,3}(`{3,}|~{3,})", line)
        in_code = fence is not None or marker is not None
        if not runs or runs[-1][0] != in_code:
            runs.append((in_code, []))
        runs[-1][1].append(line)
        if marker and fence is None:
            fence = marker.group(1)
        elif marker and fence is not None and marker.group(1).startswith(fence[0] * len(fence)):
            fence = None
    return [(code, "\n".join(lines)) for code, lines in runs]


def markdown_sections(text: str) -> list[tuple[str, str]]:
    """(heading line, section text) for every heading outside code: the section runs to the
    next heading of the same or a higher level, so it holds its subsections."""
    lines: list[tuple[bool, str]] = []
    for code, block in markdown_blocks(text):
        lines += [(code, line) for line in block.split("\n")]
    headings = [(i, len(m.group(1))) for i, (code, line) in enumerate(lines)
                if not code and (m := re.match(r"(#{1,6})\s", line))]
    sections = []
    for n, (start, level) in enumerate(headings):
        end = next((i for i, lv in headings[n + 1:] if lv <= level), len(lines))
        sections.append((lines[start][1], "\n".join(line for _, line in lines[start:end])))
    return sections


DOCUMENTED_COMMANDS = [(p, c) for p, c in ALL_COMMANDS if len(p) > 1]  # all but `musket` itself


@pytest.mark.parametrize(("path", "command"), DOCUMENTED_COMMANDS, ids=_ids(DOCUMENTED_COMMANDS))
def test_every_command_has_a_docs_section(path, command):
    """A `#`/`##`/`###` heading in README.md or a docs/ page names the command (a group is named
    by its subcommands' headings), and its section has a code block that runs it."""
    name = " ".join(path)
    heading = re.compile(r"^#{1,3}\s.*`" + re.escape(name) + r"(\s[^`]*)?`")
    use = re.compile(r"(?<![\w./-])" + re.escape(name) + r"(?![\w-])")
    named_in = []
    for page in doc_pages():
        for title, section in markdown_sections(page.read_text(encoding="utf-8")):
            if heading.match(title):
                named_in.append(f"{page.relative_to(REPO)}: {title}")
                if any(code and use.search(block) for code, block in markdown_blocks(section)):
                    return
    assert named_in, f"no `#`/`##`/`###` heading in README.md or docs/*.md names `{name}`"
    pytest.fail(f"no ``` code block running `{name}` under: {'; '.join(named_in)}")


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a page (lower case, punctuation dropped, spaces
    to hyphens, -1, -2... for repeats)."""
    anchors: set[str] = set()
    for title, _ in markdown_sections(text):
        slug = re.sub(r"[^\w\- ]", "", title.lstrip("#").strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("page", doc_pages(), ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_point_to_files_that_exist(page):
    """Every relative link (and image) in README.md and docs/*.md names a file that exists, and a
    `#anchor` on a Markdown file names one of its headings."""
    broken = []
    for code, block in markdown_blocks(page.read_text(encoding="utf-8")):
        if code:
            continue
        prose = re.sub(r"`[^`\n]*`", "", block)
        for target in re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # https:, mailto:: not a file here
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{target}: no file {linked}")
            elif anchor and linked.suffix == ".md" and anchor not in github_anchors(
                    linked.read_text(encoding="utf-8")):
                broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    assert not broken, f"{page.relative_to(REPO)} has broken links:\n" + "\n".join(broken)
