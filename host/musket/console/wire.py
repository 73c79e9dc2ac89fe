"""The device console's wire (protocol B in docs/console.md): every byte musket sends to, and
reads from, the console task lives here.

A program sends the words a person would type, prefixed by `@` and a request id
(`@7 status`); the device answers with exactly one line `@7 {json}`. Everything else on the
line (the device's echo of what was typed, its log lines, the `musket> ` prompt) is skipped.
The port is any pyserial URL: a USB serial adapter, a virtual device's pty, socket://.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Protocol

from musket.errors import BadInput, DeviceReportedErrors, UnitSilent

CONSOLE_BAUD = 115200  # the REPL UART's rate on the ESP32 port
# How long one read of the port blocks: short, so that a deadline is checked often.
POLL_S = 0.05
# A console answer to a read command: the device answers between two of its tasks' steps.
ANSWER_TIMEOUT_S = 5.0
# The longest line the device sends (a status answer is about 2 KB); a longer run of bytes
# without a line end is noise, not an answer.
MAX_LINE_BYTES = 16384
PROMPT = "musket> "
# The line end musket sends: a terminal's Enter (CR), and LF for readers that split on LF.
LINE_END = b"\r\n"

_ANSWER = re.compile(r"@(\d+) (\{.*\})\s*$")
_WORD = re.compile(r"^[\x21-\x7e]+$")


class ConsoleGone(UnitSilent):
    """The port vanished or closed (a pulled cable, an unplugged adapter, a stopped device)."""

    hint = ("check the USB cable and the unit's power, then run the command again; a change "
            "that was in flight was made entirely or not at all (read it back to see which)")


class ConsoleTimeout(UnitSilent):
    """The device did not answer in time."""

    hint = ("is the application running? (after Ctrl-C or a raw REPL, reset the unit); check "
            "the cable and the baud rate (115200)")


class DeviceRefused(DeviceReportedErrors):
    """The device answered with an error: not in service mode, an invalid value, ..."""


class BadWords(BadInput):
    """A request that cannot be sent as one console line."""


class Transport(Protocol):
    """What the wire needs from a port: pyserial's Serial, or a fake in a unit test."""

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


@dataclass
class Answer:
    """One `@id {json}` line: ok with a result, or an error, or a confirmation to ask for."""

    id: int
    ok: bool
    result: object = None
    error: str | None = None
    confirm: str | None = None
    summary: str | None = None

    @classmethod
    def parse(cls, request_id: int, payload: dict) -> Answer:
        if not isinstance(payload, dict) or "ok" not in payload:
            raise DeviceRefused(f"the device's answer to request {request_id} is not an "
                                f"answer: {json.dumps(payload)[:120]}")
        return cls(request_id, bool(payload["ok"]), payload.get("result"),
                   payload.get("error"), payload.get("confirm"), payload.get("summary"))


def open_port(port: str, baud: int = CONSOLE_BAUD) -> Transport:
    """Opens the console port (a path or a pyserial URL) without resetting the unit."""
    import serial

    try:
        link = serial.serial_for_url(port, baudrate=baud, timeout=POLL_S, do_not_open=True)
        # DTR/RTS drive EN and IO0 on most ESP32 boards: leave them alone, or opening the port
        # would reset the unit under the technician's hands.
        link.dtr = False
        link.rts = False
        link.open()
    except (serial.SerialException, OSError, ValueError) as e:
        raise ConsoleGone(f"cannot open console {port}: {e}") from None
    return link


class Wire:
    """Requests and answers on one console port; one request at a time."""

    def __init__(self, transport: Transport, port: str = "console") -> None:
        self.transport = transport
        self.port = port
        self._next_id = 1
        self._buffer = bytearray()
        # Lines that were not answers (log lines, the prompt, echo), for a person to see.
        self.on_line = None

    def request(self, words: str, timeout: float = ANSWER_TIMEOUT_S) -> Answer:
        """Sends `words` as one request and returns the device's answer to it."""
        line = " ".join(words.split())
        if not line or any(not _WORD.match(w) for w in line.split(" ")):
            raise BadWords(f"{words!r}: a console request is printable ASCII words")
        request_id = self._next_id
        self._next_id += 1
        self._write(b"@%d %s" % (request_id, line.encode()) + LINE_END)
        deadline = time.monotonic() + timeout
        while True:
            text = self._read_line(deadline, line)
            match = _ANSWER.search(text)
            if match is None:
                if self.on_line is not None and text.strip() and text.strip() != PROMPT.strip():
                    self.on_line(text)
                continue
            if int(match.group(1)) != request_id:
                continue  # the late answer to a request that timed out earlier
            try:
                payload = json.loads(match.group(2))
            except ValueError:
                continue  # the echo of a request whose words end in a brace, not an answer
            return Answer.parse(request_id, payload)

    def clear_line(self) -> None:
        """Ends whatever half line the device holds (a cable pulled mid-request leaves one),
        so that the next request starts on a line of its own; an empty line is a no-op."""
        self._write(LINE_END)

    def close(self) -> None:
        try:
            self.transport.close()
        except OSError:
            pass  # the port is already gone; nothing of ours is left open

    def _write(self, data: bytes) -> None:
        try:
            self.transport.write(data)
        except Exception as e:  # noqa: BLE001 - pyserial raises its own and OSError
            raise ConsoleGone(f"console {self.port} went away ({_first_line(e)})") from None

    def _read_line(self, deadline: float, line: str) -> str:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                raw = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                return raw.decode("utf-8", "replace").rstrip("\r")
            if len(self._buffer) > MAX_LINE_BYTES:
                del self._buffer[:]
            if time.monotonic() > deadline:
                raise ConsoleTimeout(f"console {self.port}: no answer to {line!r}")
            try:
                chunk = self.transport.read(4096)
            except Exception as e:  # noqa: BLE001 - pyserial raises its own and OSError
                raise ConsoleGone(f"console {self.port} went away ({_first_line(e)})") from None
            if chunk:
                self._buffer.extend(chunk)


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
