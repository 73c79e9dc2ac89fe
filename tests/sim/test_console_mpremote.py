"""Acceptance: the real mpremote against the console of `musket sim run --console`.

The virtual device runs as a separate `musket` process, as a developer would start it; mpremote
reaches its REPL through the pty it prints, runs code, lists, uploads and downloads files with
and without a soft reset. Afterwards the uploaded file must be inside the littlefs partition of
the device's flash image, byte for byte.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musket import fsimage
from musket.boards import load_board

BOARD = "esp32-sim7080g"
SPAN = "2h"  # far longer than the test: the test stops the device itself
SPEED = 2  # virtual seconds per wall second: the app's 30 s watchdog leaves mpremote 15 s
STARTUP_TIMEOUT_S = 20  # until the `console: <pty>` line appears
MPREMOTE_TIMEOUT_S = 30  # per mpremote call
STOP_TIMEOUT_S = 15  # from SIGTERM to the host process ending
POWER_OFF_TIMEOUT_S = 5  # from the host ending to its device process ending
PAYLOAD_SIZE = 3 * 1024
FIRMWARE_FILES = {"board.json", "boot.py", "main.py"}
# The application's modules are in the ROMFS partition under both interpreters, not on the
# filesystem. MicroPython lists the image's mount point, /rom; under CPython only imports see
# the image, the firmware's `os` shows the littlefs filesystem alone.
ROM_DIR = {"micropython": {"rom/"}, "cpython": set()}

# Interrupting main.py stops the firmware feeding its watchdog (30 s by default), which keeps
# running, as on an ESP32: at SPEED that leaves 1.5 s of wall time before the board resets
# under mpremote. The first command therefore stretches the watchdog to the config maximum
# (600 s virtual, 30 s wall), as one would on a real board before a long session.
WDT_STRETCH_MS = 600_000
STRETCH_WATCHDOG = "import machine\nmachine.WDT(timeout=%d)\n" % WDT_STRETCH_MS


def _script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _payload() -> bytes:
    """Binary test data: every byte value (the REPL's control characters included), then
    random bytes."""
    rest = random.Random(20260101).randbytes(PAYLOAD_SIZE - 256)
    return bytes(range(256)) + rest


class ConsoleSim:
    """One `musket sim run --console` process, in its own process group with its device."""

    def __init__(self, workdir: Path, interpreter: str) -> None:
        self.workdir = workdir
        self.interpreter = interpreter
        self.stdout_path = workdir.parent / "sim-stdout.txt"
        self.stderr_path = workdir.parent / "sim-stderr.txt"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        """Starts the device; returns the path of its console pty."""
        cmd = [_script("musket"), "sim", "run", "--console", "--for", SPAN,
               "--speed", str(SPEED), "--workdir", str(self.workdir),
               "--interpreter", self.interpreter, "--board", BOARD, "--json"]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            first, newline, _ = self.stdout().partition("\n")
            if newline:
                assert first.startswith("console: /dev/"), f"unexpected first line: {first!r}"
                return first.removeprefix("console: ").strip()
            if self.proc.poll() is not None:
                pytest.fail(f"musket sim run exited {self.proc.returncode} before printing "
                            f"its console:\n{self.stdout()}{self.stderr()}")
            time.sleep(0.05)
        pytest.fail(f"no console line within {STARTUP_TIMEOUT_S} s:\n{self.stdout()}"
                    f"{self.stderr()}")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as a harness would; returns the host's exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"musket sim run ignored SIGTERM for {STOP_TIMEOUT_S} s")

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """Last resort: the host and its device, whatever state they are in."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


@pytest.fixture
def console_sim(tmp_path, interpreter):
    sim = ConsoleSim(tmp_path / "device", interpreter)
    try:
        yield sim
    finally:
        sim.kill()


def mpremote(port: str, *args: str) -> str:
    cmd = [sys.executable, "-m", "mpremote", "connect", port, *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=MPREMOTE_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpremote {' '.join(args)} took over {MPREMOTE_TIMEOUT_S} s; "
                    f"output so far: {e.stdout!r} {e.stderr!r}")
    assert done.returncode == 0, (
        f"mpremote {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def listing(ls_output: str) -> dict[str, int]:
    """`mpremote fs ls` output as {name: size}; directories keep their trailing slash."""
    entries = {}
    for line in ls_output.splitlines():
        size, _, name = line.strip().partition(" ")
        if size.isdigit() and name:
            entries[name.strip()] = int(size)
    return entries


def test_mpremote_runs_code_and_moves_files_through_the_console(console_sim, tmp_path,
                                                                interpreter):
    payload = _payload()
    local = tmp_path / "data.bin"
    local.write_bytes(payload)
    copy_back = tmp_path / "copy.bin"
    port = console_sim.start()

    out = mpremote(port, "resume", "exec", STRETCH_WATCHDOG + "print(sum(range(10)))")
    assert out.split() == ["45"]

    # The modem's identity and signal, as provisioning and the field console read them.
    report = json.loads(mpremote(port, "resume", "exec",
                                 "from app import diag; diag.modem()").strip().splitlines()[-1])
    assert report["ok"] is True and report["identity"]["iccid"].startswith("89"), report
    assert report["signal"]["rssi_dbm"] is not None

    files = listing(mpremote(port, "resume", "fs", "ls"))
    assert FIRMWARE_FILES | ROM_DIR[interpreter] <= files.keys(), files
    assert "app/" not in files, files

    mpremote(port, "resume", "fs", "cp", str(local), ":data.bin")
    mpremote(port, "resume", "fs", "cp", ":data.bin", str(copy_back))
    assert copy_back.read_bytes() == payload

    # Without `resume`, mpremote soft-resets the board first: a new boot, same filesystem.
    files = listing(mpremote(port, "fs", "ls"))
    assert files.get("data.bin") == PAYLOAD_SIZE, files
    assert FIRMWARE_FILES <= files.keys(), files

    code = console_sim.stop()
    summary = json.loads(console_sim.stdout().partition("\n")[2])
    assert code == 0, f"exit {code}: {summary}\n{console_sim.stderr()}"
    assert summary["errors"] == [], "no watchdog reset or crash during the session"
    assert summary["interpreter"] == console_sim.interpreter

    deadline = time.monotonic() + POWER_OFF_TIMEOUT_S
    while console_sim.group_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not console_sim.group_alive(), "the device process outlived its host"

    part = load_board(BOARD).filesystem(ota=False)
    image = (console_sim.workdir / "flash.bin").read_bytes()
    on_flash = fsimage.read(image[part.offset:part.offset + part.size])
    assert on_flash["data.bin"] == payload
    assert {"board.json", "boot.py", "main.py"} <= on_flash.keys()
