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
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from musket_sim.device import RunResult, VirtualDevice
from musket_sim.rom_loader import SessionLog


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
