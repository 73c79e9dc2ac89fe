"""The device console (UART0) on a pty, paced at the UART's baud rate.

Tools open the pty's path (`console: /dev/pts/N`) as they would a USB serial adapter. The
bridge outlives device reboots: bytes typed while the device restarts reach the next boot.
"""

from __future__ import annotations

import os
import pty
import select
import threading
import time
import tty
from typing import IO

CONSOLE_BAUD = 115200  # MicroPython's ESP32 port runs its REPL UART at this rate
BITS_PER_BYTE = 10  # start bit, 8 data bits, stop bit
_READ_CHUNK = 256


def transfer_seconds(nbytes: int, baud: int = CONSOLE_BAUD) -> float:
    return nbytes * BITS_PER_BYTE / baud


class ConsolePty:
    def __init__(self, baud: int = CONSOLE_BAUD) -> None:
        self.baud = baud
        self.master, self._slave = pty.openpty()
        # Raw, so the pty neither echoes nor translates: the device does its own echo.
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._device_stdin: IO[bytes] | None = None
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._from_host, daemon=True)
        self._reader.start()

    def attach(self, device_stdin: IO[bytes]) -> None:
        """Routes console input to a freshly booted device process."""
        with self._lock:
            self._device_stdin = device_stdin
            pending, self._pending = bytes(self._pending), bytearray()
        if pending:
            self._send_to_device(pending)

    def detach(self) -> None:
        with self._lock:
            self._device_stdin = None

    def _send_to_device(self, data: bytes) -> None:
        with self._lock:
            target = self._device_stdin
            if target is None:
                self._pending.extend(data)
                return
        try:
            target.write(data)
            target.flush()
        except (BrokenPipeError, ValueError, OSError):
            with self._lock:
                self._pending.extend(data)

    def _from_host(self) -> None:
        while not self._closed:
            try:
                data = os.read(self.master, _READ_CHUNK)
            except OSError:
                return
            if not data:
                return
            time.sleep(transfer_seconds(len(data), self.baud))
            self._send_to_device(data)

    def write(self, data: bytes) -> None:
        """Device output towards whoever has the pty open, at the UART's pace. With nobody
        reading, the pty's buffer fills and further output is dropped, as a UART's would be."""
        if self._closed:
            return
        time.sleep(transfer_seconds(len(data), self.baud))
        view = memoryview(data)
        while view and not self._closed:
            _, writable, _ = select.select([], [self.master], [], 0)
            if not writable:
                return
            try:
                sent = os.write(self.master, view)
            except OSError:
                return
            view = view[sent:]

    def close(self) -> None:
        self._closed = True
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
