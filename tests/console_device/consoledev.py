"""A virtual device running the whole firmware with its console on a pty, driven as a
technician's laptop drives a board over USB: lines typed into the pty, replies read from it.

The device runs in a thread of the test (VirtualDevice.run, paced at `speed` virtual seconds
per wall second, as a console needs); `stop()` pulls its cable and returns the run's result.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

from musket_sim import VirtualDevice
from musket_sim.run_record import RunResult

MUSKET = str(Path(sys.executable).with_name("musket"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")
READY_TIMEOUT_S = 60  # from the start of the run to the console's first answer
ASK_TIMEOUT_S = 60  # one request, a selftest's modem check included


class ConsoleDevice:
    def __init__(self, device: VirtualDevice, span_s: float, speed: float) -> None:
        self.device = device
        self.span_s = span_s
        self.speed = speed
        self.port = device.open_console()
        self.fd: int | None = None
        self.output = bytearray()  # everything the console said, for failure messages
        self._unread = bytearray()
        self._next_id = 100
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.device.run(self.span_s, speed=self.speed)
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def start(self) -> ConsoleDevice:
        self._thread.start()
        self.open()
        return self.until_answering()

    def until_answering(self) -> ConsoleDevice:
        """Asks until the application's console answers: bytes sent while a board resets
        are lost, as on a real one, so each ask is short and asked again."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                self.ask("help", timeout=3)
                return self
            except TimeoutError:
                if time.monotonic() > deadline or not self._thread.is_alive():
                    raise AssertionError("the console never answered:\n"
                                         + self.output.decode(errors="replace")[-3000:]
                                         ) from None

    def wait_for(self, what: str, check, timeout: float = READY_TIMEOUT_S) -> dict:
        """Asks `status` until check(result) holds; returns that status."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.ask("status")
            status = reply.get("result")  # None: refused ("out of memory now"), asked again
            if status is not None and check(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} within {timeout} s: {reply}")
            time.sleep(0.5)

    def open(self) -> None:
        """Opens the pty as a terminal program does (raw, no echo of its own)."""
        self.fd = os.open(self.port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def close_port(self) -> None:
        """The cable pulled on the laptop's side: the pty closed, whatever was under way."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def _fill(self, wait_s: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], wait_s)
        if ready:
            chunk = os.read(self.fd, 4096)
            self.output.extend(chunk)
            self._unread.extend(chunk)

    def read_until(self, marker: bytes, timeout: float = ASK_TIMEOUT_S) -> bytes:
        """The console's output up to and including `marker`."""
        deadline = time.monotonic() + timeout
        while True:
            i = self._unread.find(marker)
            if i >= 0:
                out = bytes(self._unread[:i + len(marker)])
                del self._unread[:i + len(marker)]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {marker!r} in {timeout} s; last output:\n"
                                   + self.output.decode(errors="replace")[-2000:])
            self._fill(min(left, 0.2))

    def ask(self, request: str, timeout: float = ASK_TIMEOUT_S) -> dict:
        """A program's request (`@<id> <request>`): the one reply line, parsed."""
        self._next_id += 1
        rid = self._next_id
        self.send(f"@{rid} {request}\r\n".encode())
        self.read_until(f"@{rid} ".encode(), timeout)
        line = self.read_until(b"\n", timeout)
        return json.loads(line)

    def type_line(self, text: str, timeout: float = ASK_TIMEOUT_S) -> str:
        """A person's line: what the console shows up to its next prompt."""
        self.send(text.encode() + b"\r")
        return self.read_until(b"musket> ", timeout).decode(errors="replace")

    def confirmed(self, request: str) -> dict:
        """A change asked for, then performed with the token the device gave."""
        first = self.ask(request)
        assert first["ok"] is False and "confirm" in first, first
        return self.ask(f"{request} confirm={first['confirm']}")

    def stop(self) -> RunResult:
        self.close_port()
        self.device.stop()
        self._thread.join(60)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the run did not end"
        return self.result


def status_both_ways(device: VirtualDevice) -> tuple[dict, subprocess.CompletedProcess, list[str],
                                                      RunResult]:
    """Boots `device` with its console and asks for its status twice: as the protocol answers
    it and as `musket console status` shows it (one row per part, colours taken out); -> (the
    answer's result, the command's run, its rows, the device's run)."""
    console = ConsoleDevice(device, 3600, 5).start()
    try:
        answer = console.ask("status")["result"]
        screen = subprocess.run([MUSKET, "console", "--port", console.port, "status"],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "COLUMNS": "160"})  # one row, unwrapped
    finally:
        result = console.stop()
        device.close()
    return answer, screen, ANSI.sub("", screen.stdout).splitlines(), result
