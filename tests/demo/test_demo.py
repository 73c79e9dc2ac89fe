"""`musket demo` end to end: the stages run (real esptool, real Mosquitto, the fleet service,
the rules engine, `musket console`, six units under the real MicroPython interpreter) and
each of the report's checks is its own test item, so one failure does not hide the next.
Run twice in the same work folder, it gives the same report and leaves no process behind."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from musket import demo
from musket.demo.units import FLEET

pytestmark = pytest.mark.slow


def _processes_using(folder: Path) -> list[str]:
    """Command lines of live processes that name the folder (the demo's units, broker,
    loaders and fleet service all do)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The demo run twice in one work folder: (report, printed text, processes left) each."""
    workdir = tmp_path_factory.mktemp("demo")
    out = []
    for _ in range(2):
        text = io.StringIO()
        report = demo.run(workdir, Console(file=text, width=120))
        out.append((report, text.getvalue(), _processes_using(workdir)))
    return out


def _checks(report: dict) -> dict[str, dict]:
    return {c["what"]: c for c in report["checks"]}


def _expected_checks() -> list[str]:
    units = [u.name for u in FLEET]
    live = units[:5]
    return (["flashed with esptool"]
            + [f"{u} bound to its SIM and modem" for u in live]
            + ["unit-6 refused: its SIM is in unit-1"]
            + [f"{u} end-of-line" for u in live]
            + [f"{u} counted what its appliance did" for u in live]
            + [f"{u} data the fleet heard" for u in live]
            + ["unit-2 coverage gap ridden out", "unit-3 hung modem recovered",
               "unit-4 unplugged sensor reported"]
            + [f"{u} data cost" for u in live]
            + [f"{u} beans ordered in time" for u in live]
            + ["a ticket for the unplugged sensor, none for the others"]
            + [f"{c} billed for its brews" for c in ("bistro-lumen", "cafe-aurora",
                                                      "office-north")]
            + ["technician confirmed the ticket's diagnosis on site",
               "repair proved by the unit's selftest, visit logged on the unit",
               "ticket closed on site with the repair, audited",
               "release 1.1.0 confirmed on every unit",
               "release 1.2.0 rolled back on the canary, campaign aborted"])


@pytest.mark.parametrize("what", _expected_checks())
def test_the_reports_check_passes(runs, what):
    check = _checks(runs[0][0]).get(what)
    assert check is not None, f"the report has no check {what!r}"
    assert check["ok"], f"{what}: {check['detail']}"


def test_the_report_has_no_other_checks(runs):
    assert sorted(_checks(runs[0][0])) == sorted(_expected_checks())


def test_the_refused_unit_is_named_with_its_reason(runs):
    report, text, _ = runs[0]
    assert report["units"]["unit-6"]["device_id"] is None
    assert "unit-6 refused at provisioning: SIM 8949019237115900018 is already bound" in \
        " ".join(text.split())


def test_nothing_is_left_running(runs):
    for _, _, left in runs:
        assert left == []


def _without_air_bytes(report: dict) -> dict:
    """The report but for its timing and the modem models' air bytes, which count the TCP
    segments the real broker's replies came in (docs/demo.md)."""
    same = {k: v for k, v in report.items() if k not in ("seconds", "checks")}
    same["checks"] = [(c["what"], c["ok"]) for c in report["checks"]]
    same["units"] = {name: {**u, "data": u["data"][:1]} for name, u in report["units"].items()}
    return same


def test_a_second_run_gives_the_same_report(runs):
    first, second = runs[0][0], runs[1][0]
    assert second["ok"]
    assert _without_air_bytes(first) == _without_air_bytes(second)
    assert first["units"]["unit-1"]["device_id"] is not None
    assert {u["firmware"] for u in first["units"].values() if u["device_id"]} == {"1.1.0"}


def test_the_update_campaigns_end_as_staged(runs):
    campaigns = runs[0][0]["campaigns"]
    assert campaigns["release-1-1-0"]["state"] == "completed"
    assert set(campaigns["release-1-1-0"]["units"].values()) == {"confirmed"}
    bad = campaigns["release-1-2-0"]
    assert bad["state"] == "aborted" and bad["units"]["unit-1"] == "rolled_back"
    assert {u: s for u, s in bad["units"].items() if u != "unit-1"} == {
        u: "skipped" for u in ("unit-2", "unit-3", "unit-4", "unit-5")}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_leaves_nothing_running(tmp_path, signum):
    """Ctrl-C (or a script's SIGTERM) once the units are being provisioned, each on a console
    of its own: the demo stops them, the loaders and the broker before it exits."""
    out = tmp_path / "out.txt"
    workdir = tmp_path / "work"
    with open(out, "wb") as f:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("musket")), "demo",
                                 "--workdir", str(workdir)], stdout=f, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while "provision unit-" not in out.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        proc.send_signal(signum)
        assert proc.wait(60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _processes_using(workdir) == []
