"""The virtual chip's ROM serial loader: what real esptool talks to when it flashes a virtual
device, over `socket://127.0.0.1:PORT` or a pty.

It speaks the protocol of esptool's "Serial Protocol" documentation for two chips, the ESP32
and the ESP32-S3, their differences as data (`ChipRom`): SLIP frames; SYNC; GET_SECURITY_INFO
(the S3's ROM answers with its chip id, 9, which is how esptool tells newer chips apart; the
ESP32's ROM does not know the command, so esptool reads its chip-detect magic word);
READ_REG/WRITE_REG over a register map with the chip-detect magic word, eFuse words (the
device's MAC, chip revision, package) and an SPI flash controller that answers JEDEC ID and
SFDP reads; SPI_ATTACH and SPI_SET_PARAMS; FLASH_BEGIN/DATA/END and the deflate variants;
SPI_FLASH_MD5; CHANGE_BAUDRATE; READ_FLASH_SLOW; RAM download (MEM_BEGIN/DATA/END). Code
downloaded to RAM and started in the chip's IRAM is taken to be esptool's flasher stub: the
loader answers "OHAI" and from then on speaks the stub's dialect (2 status bytes, raw MD5,
ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE); a jump outside IRAM (code built for
another chip) crashes the chip back into its ROM loader, without OHAI. Bytes land in the
device's flash image file with NOR semantics; a write past the end of flash, a bad checksum, a
sequence gap or a broken deflate stream is refused with the ROM's (or the stub's) error code,
never written.

The link is paced like a UART: 10 bits per byte at the current baud rate, each direction on
its own, starting at 115200 after every reset and following CHANGE_BAUDRATE.

Written here rather than taken from PyPI's esp32-mock-bootloader (0.3.0, evaluated): that mock
keeps flash in one process-wide buffer, gives every device of a chip the same MAC, acknowledges
CHANGE_BAUDRATE without changing any pace, and reports success for a corrupt deflate stream.

Its parts: `rom_protocol` (command and error codes, SLIP framing, the data checksum),
`rom_link` (the UART's pace), `rom_chips` (each chip's ROM as data), `rom_flash` (the flash
image as NOR flash, a download and its deflate stream) and `rom_session` (one connection's
command state machine). This module serves them on a TCP port or a pty.
"""

from __future__ import annotations

import errno
import os
import pty
import select
import socket
import struct
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from musket_sim.rom_chips import CHIPS, device_mac
from musket_sim.rom_flash import FlashFile
from musket_sim.rom_link import PacedLink
from musket_sim.rom_protocol import LoaderError
from musket_sim.rom_session import LoaderSession, SessionLog

__all__ = ["LoaderError", "LoaderServer", "SessionLog", "device_mac"]


class LoaderServer:
    """Serves a flash image's ROM loader on a loopback TCP port (`socket://` URL) or a pty,
    one connection at a time, as a UART has one peer. Every new connection meets a freshly
    reset ROM at 115200 baud (the station's auto-reset circuit). `pull()` pulls the cable."""

    def __init__(self, image: Path, flash_size: int, chip: str, mac: bytes, *,
                 port: int = 0, use_pty: bool = False,
                 on_session_end: Callable[[SessionLog], None] | None = None,
                 on_connect: Callable[[], None] | None = None) -> None:
        if chip not in CHIPS:
            raise LoaderError(f"no ROM loader model for {chip} (have: {', '.join(CHIPS)})")
        self.chip = CHIPS[chip]
        self.flash = FlashFile(image, flash_size)
        self.mac = mac
        self.sessions: list[SessionLog] = []
        self._on_session_end = on_session_end
        self._on_connect = on_connect
        self._stopped = threading.Event()
        self._connection: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._master: int | None = None
        if use_pty:
            self._master, slave = pty.openpty()
            tty.setraw(slave)
            self.url = os.ttyname(slave)
            os.close(slave)  # the host opens it by path; its closing ends a session
            target = self._serve_pty
        else:
            self._listener = socket.create_server(("127.0.0.1", port))
            # Set here, not in the thread: a server closed at once must not race the thread.
            self._listener.settimeout(0.1)
            self.url = "socket://127.0.0.1:%d" % self._listener.getsockname()[1]
            target = self._serve_tcp
        self._thread = threading.Thread(target=target, name=f"rom-loader {self.url}",
                                        daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._connection is not None

    def _finish(self, session: LoaderSession) -> None:
        self.sessions.append(session.log)
        if self._on_session_end:
            self._on_session_end(session.log)

    def _serve_tcp(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connection = connection
            if self._on_connect:
                self._on_connect()
            link = PacedLink(_socket_reader(connection), connection.sendall)
            session = LoaderSession(self.chip, self.flash, self.mac, link)
            try:
                session.serve(self._stopped)
            except OSError as e:
                session.log.ended_by = f"line error: {e}"
            finally:
                self._connection = None
                _close_quietly(connection)
            self._finish(session)

    def _serve_pty(self) -> None:
        master = self._master
        assert master is not None
        while not self._stopped.is_set():
            # Nobody has the pty open until a read stops failing with EIO.
            first = _pty_read(master, 0.05)
            if not first:
                if first == b"":
                    time.sleep(0.02)
                continue
            pending = [first]
            if self._on_connect:
                self._on_connect()

            def read(timeout: float, pending=pending) -> bytes | None:
                return pending.pop() if pending else _pty_read(master, timeout)

            link = PacedLink(read, lambda data: _pty_write(master, data))
            session = LoaderSession(self.chip, self.flash, self.mac, link)
            try:
                session.serve(self._stopped)
            except OSError as e:
                session.log.ended_by = f"line error: {e}"
            self._finish(session)

    def pull(self) -> None:
        """The cable comes out: the connection drops mid-whatever, the port goes away."""
        self._stopped.set()
        connection = self._connection
        if connection is not None:
            # An abortive close (RST), as a vanished USB adapter gives the host an error now.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _close_quietly(connection)
        if self._listener is not None:
            _close_quietly(self._listener)
        if self._master is not None:
            try:
                os.close(self._master)
            except OSError:
                pass
            self._master = None
        self._thread.join(timeout=5)
        self.flash.close()

    stop = pull


def _socket_reader(connection: socket.socket) -> Callable[[float], bytes | None]:
    def read(timeout: float) -> bytes | None:
        try:
            ready, _, _ = select.select([connection], [], [], timeout)
            if not ready:
                return None
            return connection.recv(65536)
        except (OSError, ValueError):  # ValueError: closed under us (the cable pulled)
            return b""
    return read


def _pty_read(master: int, timeout: float) -> bytes | None:
    try:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            return None
        return os.read(master, 65536)
    except OSError as e:
        if e.errno in (errno.EIO, errno.EBADF):
            return b""  # no one has the other end open (or we were pulled)
        raise
    except ValueError:
        return b""


def _pty_write(master: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(master, view):]


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
