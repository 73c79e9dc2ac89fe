"""A virtual device on the bench, as a flashing or provisioning station sees it: its ROM loader
on one port, its console on a pty, and the reset circuit between them.

A real board has one UART and a USB adapter whose DTR/RTS lines reset the chip into its ROM
loader (esptool's --before default-reset) or into the app (--after hard-reset). A TCP socket
or a pty carries no such lines, so the virtual board gives the ROM loader a port of its own
and models the circuit by what happens on it:

- a host connecting to the loader port resets the chip into download mode (a running app
  stops), so esptool is used with `--before no-reset`;
- a host closing the loader port after writing flash resets the chip into the app, as
  esptool's default `--after hard-reset` would; so does esptool's `soft-reset` (FLASH_END).

A line flashes many units at once, each a chip of its own. `LoaderProcess` gives one unit's
ROM loader a process of its own (`python -m musket_sim.station IMAGE ...`), so that the
loaders of eight units do not take turns on one Python interpreter with each other and with
the host's esptool threads, which real chips never do.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import select
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from musket_sim.device import RunResult, VirtualDevice
from musket_sim.rom_loader import LoaderError, LoaderServer, SessionLog

LOADER_START_TIMEOUT_S = 30
LOADER_STOP_TIMEOUT_S = 30  # the loader waits at most 5 s for a session to end


class Station:
    """Serves one device until `close()`: download mode when a host connects, the app after
    a flashing session ends."""

    def __init__(self, device: VirtualDevice, *, loader_port: int = 0, use_pty: bool = False,
                 console: bool = True) -> None:
        self.device = device
        self._flashed = threading.Event()
        self._closed = threading.Event()
        self.last_session: SessionLog | None = None
        self._host_connected = threading.Event()
        self.loader_url = device.serve_loader(loader_port, use_pty=use_pty,
                                              on_session_end=self._session_ended,
                                              on_connect=self._host_connects)
        self.console_path = device.open_console() if console else None

    def _host_connects(self) -> None:
        self._host_connected.set()
        self.device.reset_into_loader()

    def _session_ended(self, log: SessionLog) -> None:
        self.last_session = log
        if log.writes or log.reboot:
            self._flashed.set()

    def serve(self, span_s: float, speed: float | None,
              report: Callable[[str, object], None]) -> None:
        """Loops until `close()`: waits in download mode, then boots what was flashed for at
        most `span_s` virtual seconds (or until a host connects to the loader again)."""
        while not self._closed.is_set():
            if not self._flashed.wait(0.1):
                continue
            self._flashed.clear()
            self._host_connected.clear()
            report("flashed", self.last_session)
            result: RunResult = self.device.run(span_s, speed=speed)
            report("ran", result)
            if result.exit_reason == "interrupted" and not self._host_connected.is_set():
                # Not reset into the loader by a host: the station itself was stopped
                # (Ctrl-C, SIGTERM), which the run took as switching the device off.
                raise KeyboardInterrupt

    def close(self) -> None:
        self._closed.set()
        self.device.close()


class LoaderProcess:
    """A flash image's ROM loader (`LoaderServer`) in a process of its own. `url` is its
    port for esptool; `pull()` pulls the cable, ends the process and returns what each
    connection did (`SessionLog` fields); `unplug()` only pulls the cable, so that many
    units can be unplugged at once before their `pull()`. The process also ends if this one
    dies."""

    def __init__(self, image: Path, chip: str, mac: bytes, *, use_pty: bool = False) -> None:
        command = [sys.executable, "-m", "musket_sim.station", str(image), "--chip", chip,
                   "--mac", mac.hex()] + (["--pty"] if use_pty else [])
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The loader's port; waits until the process serves it."""
        if self._url is None:
            stdout = self._proc.stdout
            assert stdout is not None
            ready, _, _ = select.select([stdout], [], [], LOADER_START_TIMEOUT_S)
            line = stdout.readline().strip() if ready else ""
            if not line:
                self.pull()
                raise LoaderError(f"the ROM loader process did not start (exit code "
                                  f"{self._proc.returncode})")
            self._url = line
        return self._url

    def unplug(self) -> None:
        stdin, self._proc.stdin = self._proc.stdin, None
        if stdin is not None:
            stdin.close()  # the process pulls the cable, reports and ends

    def pull(self) -> list[dict]:
        self.unplug()
        try:
            out, _ = self._proc.communicate(timeout=LOADER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, _ = self._proc.communicate()
        lines = out.splitlines()
        if self._url is None and lines:
            lines = lines[1:]
        return [json.loads(line) for line in lines if line.startswith("{")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m musket_sim.station",
        description="Serve a flash image's ROM loader until stdin closes; prints the port "
                    "first, then one JSON line per connection when done.")
    parser.add_argument("image", type=Path, help="the device's flash image file")
    parser.add_argument("--chip", default="esp32")
    parser.add_argument("--mac", required=True, help="the device's MAC, 12 hex digits")
    parser.add_argument("--pty", action="store_true", help="serve on a pty, not TCP")
    args = parser.parse_args(argv)
    try:
        server = LoaderServer(args.image, args.image.stat().st_size, args.chip,
                              bytes.fromhex(args.mac), use_pty=args.pty)
    except (LoaderError, OSError, ValueError) as e:
        raise SystemExit(f"musket_sim.station: {e}") from None
    print(server.url, flush=True)
    sys.stdin.read()  # until the host closes it, or goes away
    server.pull()
    for log in server.sessions:
        print(json.dumps(dataclasses.asdict(log)), flush=True)


if __name__ == "__main__":
    main()
