"""The device console (UART0) on a pty, paced at the UART's baud rate.

Tools open the pty's path (`console: /dev/pts/N`) as they would a USB serial adapter. The
bridge outlives device reboots: bytes typed while the device restarts reach the next boot.

Ctrl-C is taken apart from the other bytes, as the ESP32's UART driver does: for each 0x03 a
note goes down a pipe of its own (INTERRUPT_ENV names its descriptor in the device process)
before the bytes go to the device's stdin. The device interrupts its program on the note, and
its stdin stays readable by the application (its console task) as by the REPL.
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
_CTRL_C = 0x03
INTERRUPT_ENV = "MUSKET_SIM_INTERRUPT_FD"


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
        self._interrupts: int | None = None  # the write end of the device's Ctrl-C notes
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._from_host, daemon=True)
        self._reader.start()

    def interrupt_pipe(self) -> tuple[int, int]:
        """A new pipe for a boot's Ctrl-C notes: (read end for the device, write end for
        attach)."""
        return os.pipe()

    def attach(self, device_stdin: IO[bytes], interrupts: int | None = None) -> None:
        """Routes console input to a freshly booted device process; `interrupts`: the write
        end of its Ctrl-C notes' pipe, which the console then owns."""
        with self._lock:
            self._device_stdin = device_stdin
            self._interrupts = interrupts
            pending, self._pending = bytes(self._pending), bytearray()
        if pending:
            self._send_to_device(pending)

    def detach(self) -> None:
        with self._lock:
            self._device_stdin = None
            interrupts, self._interrupts = self._interrupts, None
        if interrupts is not None:
            os.close(interrupts)

    def _send_to_device(self, data: bytes) -> None:
        # Under the lock, so that detach() never closes the notes' pipe under a write; a
        # write blocks only while a live device has not read its stdin, and a dead one's
        # pipe fails at once.
        with self._lock:
            target = self._device_stdin
            interrupts = self._interrupts
            if target is None:
                self._pending.extend(data)
                return
            try:
                if interrupts is not None and _CTRL_C in data:
                    os.write(interrupts, bytes([_CTRL_C]) * data.count(_CTRL_C))
                target.write(data)
                target.flush()
            except (BrokenPipeError, ValueError, OSError):
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
