"""Acceptance: the tools technicians carry, the real mpremote and the real adafruit-ampy,
against the console pty of a virtual device whose application (and console task) is running,
under both interpreters. They stop the application with Ctrl-C, as on a board, and the device
says so; Ctrl-D (a soft reset) at the REPL starts it again (docs/console-device.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from consoledev import ConsoleDevice

from musket_sim import VirtualDevice
from musket_sim.scenario import load_scenario
from musket_sim.usage_scenario import load_usage

BOARD = "esp32-sim7080g"
SPEED = 2  # the app's 30 s watchdog leaves the tools 15 s of wall time before it resets
TOOL_TIMEOUT_S = 60
STOPPED = "musket: application stopped by Ctrl-C; Ctrl-D (soft reset) starts it again"
# As before a long session on a board: the watchdog stretched to the config maximum.
STRETCH_WATCHDOG = "import machine\nmachine.WDT(timeout=600000)\nprint('stretched')"


def _tool(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                          timeout=TOOL_TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n" \
                                 f"{done.stdout}{done.stderr}"
    return done.stdout


def mpremote(port: str, *args: str) -> str:
    return _tool(sys.executable, "-m", "mpremote", "connect", port, *args)


def ampy(port: str, *args: str) -> str:
    return _tool(str(Path(sys.executable).with_name("ampy")), "--port", port, *args)


@pytest.fixture
def console(tmp_path, interpreter):
    device = VirtualDevice(BOARD, tmp_path / "dev", interpreter=interpreter,
                           modem=load_scenario("good"), usage=load_usage("day"))
    device.create_flash()
    con = ConsoleDevice(device, 6 * 3600, SPEED).start()
    yield con
    con.stop()
    device.close()


def test_mpremote_and_ampy_work_beside_the_console_and_say_what_they_did(console, tmp_path):
    assert console.ask("status")["ok"] is True  # the application runs, its console answers
    console.close_port()
    port = console.port

    assert mpremote(port, "resume", "exec", STRETCH_WATCHDOG).split() == ["stretched"]
    assert STOPPED in console.device.console_log.read_text()
    listing = mpremote(port, "resume", "fs", "ls")
    assert "boot.py" in listing and "main.py" in listing, listing

    local = tmp_path / "notes.txt"
    local.write_bytes(b"service visit: descaled\n" * 20)
    names = ampy(port, "ls").split()
    assert "/boot.py" in names and "/main.py" in names, names
    ampy(port, "put", str(local), "/notes.txt")
    assert "/notes.txt" in ampy(port, "ls").split()
    copy = tmp_path / "copy.txt"
    ampy(port, "get", "/notes.txt", str(copy))
    assert copy.read_bytes() == local.read_bytes()

    # Ctrl-D at the REPL: a soft reset, and the application with its console is back.
    console.open()
    console.send(b"\r\x02")  # out of the raw REPL a tool may have left
    console.read_until(b">>> ")
    console.send(b"\x04")
    console.read_until(b"soft reboot")
    console.until_answering()
    assert console.ask("status")["result"]["boot_count"] == 2
    assert console.device.read_files()["notes.txt"] == local.read_bytes()
