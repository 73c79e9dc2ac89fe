"""The device console as a typed API: one method per console command (protocol B).

    from musket.console import ConsoleClient

    with ConsoleClient.open("/dev/ttyUSB0") as unit:
        print(unit.status()["identity"])
        unit.service_on("ana")
        unit.config_set("report_interval_s", "900", confirm=lambda summary: True)

State changes need service mode and a confirmation: the device answers the first request
with a token and a summary; `confirm(summary)` decides, and only then is the request sent
again with the token. Secrets the device might include in an answer are removed here
(`redact`), before any caller can print them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from musket.console.wire import (
    ANSWER_TIMEOUT_S,
    CONSOLE_BAUD,
    Answer,
    DeviceRefused,
    Wire,
    open_port,
)
from musket.errors import MusketError

# The selftest checks each part in turn, the modem's registration among them: the modem
# model's attach takes up to a minute, a hung modem's power cycle another 30 s.
SELFTEST_TIMEOUT_S = 150.0
# An AT command the modem answers at once, or one of its slow ones (AT+COPS=?) at worst.
AT_TIMEOUT_S = 40.0
# Reading the SIM's ICCID may power the modem on first.
SIMSWAP_TIMEOUT_S = 60.0

# A device whose heap cannot serve a request right now answers "out of memory now ... ask
# again" (docs/console-device.md, Heap) and changes nothing; a read is asked again this many
# times, this far apart, while the application's garbage collector frees what it can.
OUT_OF_MEMORY = "out of memory now"
READ_RETRIES = 3
READ_RETRY_PAUSE_S = 1.0

# Keys whose values are secrets wherever they appear in an answer (MQTT password, PSKs, keys).
SECRET_MARKERS = ("password", "passwd", "secret", "psk", "private", "token", "apikey", "key_pem")
REDACTED = "<hidden>"

Confirm = Callable[[str], bool]


class NotConfirmed(MusketError):
    """The person (or the script) declined the change; nothing was changed."""


def redact(value):
    """A copy of `value` without secrets: each key naming one has its value replaced."""
    if isinstance(value, dict):
        return {k: (REDACTED if _is_secret(k) and value[k] not in (None, "") else redact(v))
                for k, v in value.items() for v in (value[k],)}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _is_secret(key) -> bool:
    name = str(key).lower()
    return any(marker in name for marker in SECRET_MARKERS)


class ConsoleClient:
    """One unit's console. Not thread-safe: callers make one request at a time."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    @classmethod
    def open(cls, port: str, baud: int = CONSOLE_BAUD) -> ConsoleClient:
        wire = Wire(open_port(port, baud), port)
        wire.clear_line()
        return cls(wire)

    def close(self) -> None:
        self.wire.close()

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def status(self) -> dict:
        return self.call("status")

    def signal(self) -> dict:
        return self.call("signal", timeout=AT_TIMEOUT_S)

    def log(self) -> list:
        return self.call("log")

    def counters(self) -> dict:
        return self.call("counters")

    def sensors(self) -> dict:
        return self.call("sensors")

    def selftest(self) -> dict:
        return self.call("selftest", timeout=SELFTEST_TIMEOUT_S)

    def config_get(self, key: str) -> object:
        return self.call(f"config get {key}")

    def help(self) -> object:
        return self.call("help")

    # -- service mode and changes --------------------------------------------------------------

    def service_on(self, technician: str) -> object:
        name = " ".join(technician.split())
        if not name:
            raise DeviceRefused("service mode needs the technician's name")
        return self.call(f"service on {name}")

    def service_off(self) -> object:
        return self.call("service off")

    def config_set(self, key: str, value: str, confirm: Confirm) -> object:
        return self.change(f"config set {key} {value}", confirm)

    def at(self, command: str, confirm: Confirm) -> object:
        """Passes `command` to the modem. The device lets read-only queries through at once;
        a command that changes the radio or the SIM asks for confirmation first."""
        return self.change(f"at {command}", confirm, timeout=AT_TIMEOUT_S)

    def simswap(self, confirm: Confirm) -> dict:
        """Re-reads the SIM's ICCID; when it changed, the device records the swap (after
        confirmation). Returns {"changed": false, "iccid": ...} or {"changed": true,
        "old_iccid": ..., "new_iccid": ..., "imei": ...}."""
        return self.change("simswap", confirm, timeout=SIMSWAP_TIMEOUT_S)

    def counter_adjust(self, name: str, value: int, reason: str, confirm: Confirm) -> object:
        words = " ".join(reason.split())
        if not words:
            raise DeviceRefused("a counter adjustment needs a reason")
        return self.change(f"counter adjust {name} {int(value)} {words}", confirm)

    def reboot(self, confirm: Confirm) -> object:
        return self.change("reboot", confirm)

    # -- the protocol ------------------------------------------------------------------------

    def call(self, words: str, timeout: float = ANSWER_TIMEOUT_S):
        """One request that changes nothing; the result, or DeviceRefused with the device's
        reason. Asked again when the device's heap could not serve it at that moment."""
        answer = self.wire.request(words, timeout)
        for _ in range(READ_RETRIES):
            if answer.ok or OUT_OF_MEMORY not in (answer.error or ""):
                break
            time.sleep(READ_RETRY_PAUSE_S)
            answer = self.wire.request(words, timeout)
        if answer.confirm is not None:
            raise DeviceRefused(f"{words!r} needs a confirmation: use a change method")
        return self._result(words, answer)

    def change(self, words: str, confirm: Confirm, timeout: float = ANSWER_TIMEOUT_S):
        """A request the device may want confirmed: asks `confirm(summary)` when it does, and
        sends the request again with the token only when the answer is yes."""
        answer = self.wire.request(words, timeout)
        if answer.confirm is not None:
            if not confirm(answer.summary or words):
                raise NotConfirmed(f"{words.split()[0]}: not confirmed; nothing changed")
            answer = self.wire.request(f"{words} confirm={answer.confirm}", timeout)
            if answer.confirm is not None:
                raise DeviceRefused(f"{words!r}: the device asked again for a confirmation")
        return self._result(words, answer)

    @staticmethod
    def _result(words: str, answer: Answer):
        if not answer.ok:
            raise DeviceRefused(f"{words.split()[0]}: {answer.error or 'refused by the device'}")
        return redact(answer.result)
