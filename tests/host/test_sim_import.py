"""`musket registry import-sims` streams the vendor's list: UTF-16 files named as such, every
problem named by line however late in the file (repeats and known ICCIDs found in SQL), all rows
or none on SQLite and PostgreSQL, the exit codes a station script branches on, and a 50 MB list
imported in bounded memory."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from musket.cli import main
from musket.errors import BadInput, ExitCode, Refused
from musket.identity import luhn_check_digit
from musket.registry import Actor, Registry
from musket.registry.simcsv import (
    MAX_PROBLEMS_SHOWN,
    ImportSummary,
    SimImportError,
    SimsAlreadyKnown,
)

ACTOR = Actor("stores", "ana")
HEADER = "ICCID,plan,state\n"
BIG = 5000  # rows: more than one staging batch
MEMORY_ROWS = 1_200_000  # 43 bytes a row: a 51.6 MB file
MEMORY_LIMIT_MB = 200


def iccid(n: int) -> str:
    body = f"89490{n:013d}"
    return body + luhn_check_digit(body)


def sim_lines(count: int, start: int = 0) -> list[str]:
    return [f"{iccid(n)},iot-eu,{'suspended' if n % 10 == 9 else 'inventory'}\n"
            for n in range(start, start + count)]


def write(tmp_path, lines, name="sims.csv"):
    path = tmp_path / name
    path.write_text(HEADER + "".join(lines))
    return path




@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, tmp_path):
    if request.param == "sqlite":
        location = str(tmp_path / "registry.sqlite")
    else:
        location = request.getfixturevalue("postgres").new_database()
    with Registry.open(location, migrate=True) as r:
        yield r


def unchanged(registry, sims: int = 0, audit: int = 0) -> bool:
    counts = registry.counts()
    return counts["sims"] == sims and counts["audit"] == audit


# -- what an import returns and records -----------------------------------------------------


def test_import_returns_a_summary_and_audits_it(registry, tmp_path):
    summary = registry.import_sims(write(tmp_path, sim_lines(BIG)), ACTOR)
    assert summary == ImportSummary(count=BIG, states={"inventory": 4500, "suspended": 500},
                                    first=iccid(0), last=iccid(BIG - 1))
    assert registry.counts()["sims"] == BIG
    assert registry.sim(iccid(19)).state == "suspended"
    (entry,) = registry.audit()
    assert entry.changes == {"sims": BIG, "states": {"inventory": 4500, "suspended": 500},
                             "first": iccid(0), "last": iccid(BIG - 1)}


def test_imports_one_after_another_and_after_a_refused_one(registry, tmp_path):
    registry.import_sims(write(tmp_path, sim_lines(10)), ACTOR)
    with pytest.raises(SimImportError):
        registry.import_sims(write(tmp_path, sim_lines(10, 10) + ["89,x,y\n"], "bad.csv"), ACTOR)
    registry.import_sims(write(tmp_path, sim_lines(10, 10), "next.csv"), ACTOR)
    assert registry.counts()["sims"] == 20


def test_old_mac_line_endings_and_a_quoted_field_over_two_lines(registry, tmp_path):
    path = tmp_path / "mac.csv"
    path.write_bytes(f'ICCID,plan,state,note\r{iccid(1)},iot,inventory,"two\rlines"\r'
                     f"{iccid(2)},iot,retired,\r".encode())
    assert registry.import_sims(path, ACTOR).count == 2


# -- refused files: nothing imported, every problem named by line ---------------------------


@pytest.mark.parametrize("encoding, bom", [
    ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-16-le", b""),
    ("utf-16-be", b""),
])
def test_a_utf16_file_is_named_as_such(registry, tmp_path, encoding, bom):
    path = tmp_path / "export.csv"
    path.write_bytes(bom + (HEADER + "".join(sim_lines(3))).encode(encoding))
    with pytest.raises(SimImportError) as caught:
        registry.import_sims(path, ACTOR)
    assert str(caught.value) == ("export.csv: UTF-16 text; save it as UTF-8 CSV and import "
                                 "again")
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert unchanged(registry)


def test_a_line_that_is_not_utf8_is_named_and_the_rest_still_checked(registry, tmp_path):
    lines = sim_lines(BIG)
    lines[3000] = lines[3000].replace("iot-eu", "iot-\xe9u")  # Latin-1 é below
    lines[4000] = "8949,iot,inventory\n"
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "".join(lines)).encode("latin-1"))
    with pytest.raises(SimImportError) as caught:
        registry.import_sims(path, ACTOR)
    assert caught.value.problems == ["line 3002: not UTF-8 text",
                                     "line 4002: ICCID 8949: 4 digits (expected 19 or 20)"]
    assert unchanged(registry)


def test_a_repeat_late_in_the_file_is_named_with_its_first_line(registry, tmp_path):
    lines = sim_lines(BIG)
    lines[4500] = lines[10]
    with pytest.raises(SimImportError) as caught:
        registry.import_sims(write(tmp_path, lines), ACTOR)
    assert not isinstance(caught.value, SimsAlreadyKnown)
    assert str(caught.value) == (f"sims.csv: nothing imported, 1 bad row: line 4502: ICCID "
                                 f"{iccid(10)} appears again (first on line 12)")
    assert unchanged(registry)


def test_a_bad_row_late_in_the_file_imports_nothing(registry, tmp_path):
    lines = sim_lines(BIG)
    lines[-1] = f"{iccid(BIG)},iot,bound\n"
    with pytest.raises(SimImportError, match=f"line {BIG + 1}: ICCID {iccid(BIG)}: state "
                                             "'bound' cannot be imported"):
        registry.import_sims(write(tmp_path, lines), ACTOR)
    assert unchanged(registry)


def test_iccids_the_registry_holds_are_refused(registry, tmp_path):
    registry.import_sims(write(tmp_path, sim_lines(3), "first.csv"), ACTOR)
    lines = sim_lines(BIG, 3)
    lines[4000] = sim_lines(1, 1)[0]
    with pytest.raises(SimsAlreadyKnown) as caught:
        registry.import_sims(write(tmp_path, lines), ACTOR)
    assert str(caught.value) == (f"sims.csv: nothing imported, 1 bad row: line 4002: ICCID "
                                 f"{iccid(1)} is already in the registry (state inventory)")
    assert isinstance(caught.value, Refused) and isinstance(caught.value, SimImportError)
    assert caught.value.exit_code == ExitCode.REGISTRY_REFUSED
    assert unchanged(registry, sims=3, audit=1)


def test_problems_of_every_kind_are_shown_in_line_order_and_counted(registry, tmp_path):
    registry.import_sims(write(tmp_path, sim_lines(1), "first.csv"), ACTOR)
    lines = sim_lines(BIG)  # line 2 (iccid 0) is known to the registry
    for n in range(100, 130):  # 30 bad rows: lines 102..131
        lines[n] = f"{iccid(n)[:-1]}x,iot,inventory\n"
    lines[50] = lines[5]  # a repeat on line 52
    lines[4999] = lines[6]  # and one on line 5001
    with pytest.raises(SimImportError) as caught:
        registry.import_sims(write(tmp_path, lines), ACTOR)
    error = caught.value
    assert isinstance(error, BadInput) and not isinstance(error, SimsAlreadyKnown)
    assert error.count == 33
    assert len(error.problems) == MAX_PROBLEMS_SHOWN
    assert error.problems[:3] == [
        f"line 2: ICCID {iccid(0)} is already in the registry (state inventory)",
        f"line 52: ICCID {iccid(5)} appears again (first on line 7)",
        f"line 102: ICCID '{iccid(100)[:-1]}x': only digits allowed"]
    assert error.problems[-1].startswith("line 119: ")
    assert str(error).endswith("; and 13 more")
    assert str(error).startswith("sims.csv: nothing imported, 33 bad rows: line 2: ")
    assert unchanged(registry, sims=1, audit=1)


@pytest.mark.parametrize("content, problem", [
    (b"", "line 1: empty file"),
    (b"\xef\xbb\xbf", "line 1: empty file"),
    (b"ICCID;plan;state\n", "line 1: missing column iccid, plan, state"),
    (b"iccid,pl\xe4n,state\n", "line 1: not UTF-8 text"),
    (HEADER.encode() + b"\n\n", "no SIMs in the file (only a header)"),
])
def test_files_refused_before_any_row(registry, tmp_path, content, problem):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(SimImportError, match=re.escape(problem)):
        registry.import_sims(path, ACTOR)
    assert unchanged(registry)


def test_a_missing_file_is_bad_input(registry, tmp_path):
    with pytest.raises(SimImportError, match="nope.csv: cannot read: No such file") as caught:
        registry.import_sims(tmp_path / "nope.csv", ACTOR)
    assert caught.value.exit_code == ExitCode.BAD_INPUT


# -- through the command line ---------------------------------------------------------------


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSKET_REGISTRY", str(tmp_path / "reg.sqlite"))
    monkeypatch.setenv("MUSKET_STATION", "stores")
    monkeypatch.setenv("MUSKET_OPERATOR", "ana")

    def invoke(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == code, result.output
        return result.output

    invoke("registry", "migrate")
    return invoke


def test_cli_exit_codes_bad_file_4_known_iccid_6(run, tmp_path):
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(b"\xff\xfe" + (HEADER + sim_lines(1)[0]).encode("utf-16-le"))
    assert run("registry", "import-sims", str(utf16), code=4) == (
        "error: utf16.csv: UTF-16 text; save it as UTF-8 CSV and import again\n")
    bad = write(tmp_path, sim_lines(2) + ["8949,iot,inventory\n"], "bad.csv")
    out = run("registry", "import-sims", str(bad), code=4)
    assert out.startswith("error: bad.csv: nothing imported, 1 bad row: line 4: ICCID 8949")

    assert run("registry", "import-sims", str(write(tmp_path, sim_lines(10)))) == (
        "imported 10 SIMs (9 inventory, 1 suspended)\n")
    again = write(tmp_path, sim_lines(2, 9), "again.csv")
    out = run("registry", "import-sims", str(again), code=6)
    assert out.startswith(f"error: again.csv: nothing imported, 1 bad row: line 2: ICCID "
                          f"{iccid(9)} is already in the registry (state suspended)\nhint: ")
    assert Registry.open(tmp_path / "reg.sqlite").counts()["sims"] == 10


# -- memory ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_50mb_list_is_imported_in_bounded_memory(tmp_path):
    path = tmp_path / "sims.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        for n in range(MEMORY_ROWS):
            f.write(f"{iccid(n)},iot-eu-100mb,{'suspended' if n % 10 == 9 else 'inventory'}\n")
    assert path.stat().st_size > 50_000_000
    registry = tmp_path / "registry.sqlite"
    cli = [sys.executable, "-c", "from musket.cli import main; main(prog_name='musket')"]
    subprocess.run([*cli, "registry", "migrate", "--registry", str(registry)], check=True,
                   capture_output=True)

    # The import's own peak, read by the process itself from /proc (VmHWM belongs to the
    # program exec'd, whereas a child's rusage keeps the peak of the process it was forked
    # from: a pytest worker of a few hundred MB).
    measured = ("import sys\nfrom musket.cli import main\ntry:\n    main(prog_name='musket')\n"
                "finally:\n    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
                "    print('PEAK_KB', status.split()[0], file=sys.stderr)\n")
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", measured, "registry", "import-sims",
                            str(path), "--registry", str(registry)], capture_output=True,
                           text=True)
    seconds = time.perf_counter() - start
    output = child.stdout
    peak_mb = int(child.stderr.split("PEAK_KB")[1].split()[0]) / 1024
    print(f"import of {path.stat().st_size / 1e6:.1f} MB: {seconds:.1f} s, "
          f"peak RSS {peak_mb:.0f} MB")

    assert child.returncode == 0, output + child.stderr
    assert output == f"imported {MEMORY_ROWS} SIMs (1080000 inventory, 120000 suspended)\n"
    assert peak_mb < MEMORY_LIMIT_MB
    with sqlite3.connect(registry) as db:
        assert db.execute("SELECT count(*), min(iccid), max(iccid) FROM sims").fetchone() == (
            MEMORY_ROWS, iccid(0), iccid(MEMORY_ROWS - 1))
