"""Unit tests of the console client and its wire against a fake port that plays the device's
side of protocol B byte for byte (the acceptance tests use the real device console)."""

from __future__ import annotations

import json
import re

import pytest

from musket.console import ConsoleClient, ConsoleGone, ConsoleTimeout, DeviceRefused, NotConfirmed
from musket.console import wire as wire_mod
from musket.console.client import REDACTED, redact
from musket.console.wire import BadWords, Wire
from musket.errors import ExitCode


class FakePort:
    """Answers each request line with what `answer(words)` returns, after the device's echo,
    a log line and the prompt; records every byte written."""

    def __init__(self, answer, *, echo=True, gone_after=None):
        self.answer = answer
        self.echo = echo
        self.written = bytearray()
        self.pending = bytearray()
        self.gone_after = gone_after  # raise as a pulled cable after this many requests
        self.requests = 0

    def write(self, data):
        self.written.extend(data)
        for line in bytes(data).split(b"\r\n"):
            if not line:
                continue
            self.requests += 1
            m = re.match(rb"@(\d+) (.*)", line)
            if self.echo:
                self.pending.extend(line + b"\r\n")
            self.pending.extend(b"I 12:00:01 usage: brew counted\r\n")
            reply = self.answer(m.group(2).decode())
            if reply is not None:
                self.pending.extend(b"@%s %s\r\n" % (m.group(1), json.dumps(reply).encode()))
            self.pending.extend(b"musket> ")
        return len(data)

    def read(self, size=1):
        if self.gone_after is not None and self.requests >= self.gone_after:
            raise OSError(5, "Input/output error")
        out = bytes(self.pending[:size])
        del self.pending[:size]
        return out

    def close(self):
        pass


def client(answer, **kw):
    return ConsoleClient(Wire(FakePort(answer, **kw), "/dev/fake"))


def test_a_request_is_one_line_and_its_answer_is_found_among_log_lines_and_echo():
    unit = client(lambda words: {"ok": True, "result": {"words": words}})
    assert unit.status() == {"words": "status"}
    assert unit.config_get("report_interval_s") == {"words": "config get report_interval_s"}
    assert bytes(unit.wire.transport.written) == (b"@1 status\r\n"
                                                  b"@2 config get report_interval_s\r\n")


def test_log_lines_reach_the_callback_and_answers_do_not():
    seen = []
    unit = client(lambda words: {"ok": True, "result": 1})
    unit.wire.on_line = seen.append
    unit.counters()
    assert "I 12:00:01 usage: brew counted" in seen
    assert not any(line.startswith("@1 {") for line in seen)


def test_an_answer_to_an_older_request_is_skipped():
    port = FakePort(lambda words: {"ok": True, "result": words})
    port.pending.extend(b'@99 {"ok": true, "result": "stale"}\r\n')
    assert ConsoleClient(Wire(port)).log() == "log"


def test_an_error_answer_raises_with_the_devices_reason():
    unit = client(lambda words: {"ok": False, "error": "unknown key 'x'"})
    with pytest.raises(DeviceRefused, match="config: unknown key 'x'") as e:
        unit.config_get("x")
    assert e.value.exit_code == ExitCode.DEVICE_ERRORS


def test_a_change_asks_for_confirmation_and_sends_the_token_only_on_yes():
    def device(words):
        if words.endswith("confirm=t0k"):
            return {"ok": True, "result": {"old": "3600", "new": "900"}}
        return {"ok": False, "confirm": "t0k", "summary": "report_interval_s 3600 -> 900"}

    asked = []
    unit = client(device)
    result = unit.config_set("report_interval_s", "900",
                             confirm=lambda summary: asked.append(summary) or True)
    assert result == {"old": "3600", "new": "900"}
    assert asked == ["report_interval_s 3600 -> 900"]
    assert bytes(unit.wire.transport.written).endswith(
        b"@2 config set report_interval_s 900 confirm=t0k\r\n")

    declined = client(device)
    with pytest.raises(NotConfirmed, match="nothing changed"):
        declined.config_set("report_interval_s", "900", confirm=lambda summary: False)
    assert b"confirm=" not in bytes(declined.wire.transport.written)


def test_names_and_reasons_keep_single_spaces():
    unit = client(lambda words: {"ok": True, "result": words})
    assert unit.service_on("Ana  Lima") == "service on Ana Lima"
    assert unit.counter_adjust("brews", 120, "display replaced", confirm=lambda s: True) == (
        "counter adjust brews 120 display replaced")
    with pytest.raises(DeviceRefused, match="reason"):
        unit.counter_adjust("brews", 1, "  ", confirm=lambda s: True)


def test_bad_words_are_refused_before_anything_is_sent():
    unit = client(lambda words: {"ok": True})
    with pytest.raises(BadWords):
        unit.config_get("caf\u00e9")
    with pytest.raises(BadWords):
        unit.call("   ")
    assert unit.wire.transport.written == b""


def test_a_silent_device_times_out_with_a_hint(monkeypatch):
    unit = client(lambda words: None)  # echo and log, but never an answer
    with pytest.raises(ConsoleTimeout) as e:
        unit.wire.request("status", timeout=0.2)
    assert e.value.exit_code == ExitCode.UNIT_SILENT
    assert "115200" in e.value.hint


def test_a_pulled_cable_is_a_clear_error_with_exit_code_5():
    unit = client(lambda words: {"ok": True}, gone_after=1)
    with pytest.raises(ConsoleGone, match="console /dev/fake went away .*Input/output error") as e:
        unit.status()
    assert e.value.exit_code == ExitCode.UNIT_SILENT
    assert "cable" in e.value.hint


def test_a_missing_port_is_a_clear_error(tmp_path):
    with pytest.raises(ConsoleGone, match="cannot open console") as e:
        wire_mod.open_port(str(tmp_path / "ttyUSB9"))
    assert e.value.exit_code == ExitCode.UNIT_SILENT


def test_secrets_never_leave_the_client():
    answer = {"config": {"mqtt_host": "mqtt.example.com", "mqtt_password": "hunter2",
                         "tls_psk": "abcd", "device_id": "msk-1"},
              "list": [{"secret": "s"}], "keys": 3}
    unit = client(lambda words: {"ok": True, "result": answer})
    result = unit.status()
    assert "hunter2" not in json.dumps(result) and "abcd" not in json.dumps(result)
    assert result["config"]["mqtt_password"] == REDACTED
    assert result["config"]["mqtt_host"] == "mqtt.example.com"
    assert result["list"] == [{"secret": REDACTED}]
    assert redact({"mqtt_password": ""}) == {"mqtt_password": ""}


def test_a_read_the_heap_could_not_serve_is_asked_again(monkeypatch):
    from musket.console import client as client_mod

    monkeypatch.setattr(client_mod, "READ_RETRY_PAUSE_S", 0)
    tries = []

    def device(words):
        tries.append(words)
        if len(tries) < 3:
            return {"ok": False, "error": "out of memory now (memory allocation failed, "
                                          "allocating 464 bytes): ask again"}
        return {"ok": True, "result": {"passed": True}}

    assert client(device).selftest() == {"passed": True}
    assert tries == ["selftest"] * 3


def test_a_heap_that_stays_short_ends_in_the_devices_reason(monkeypatch):
    from musket.console import client as client_mod

    monkeypatch.setattr(client_mod, "READ_RETRY_PAUSE_S", 0)
    tries = []

    def device(words):
        tries.append(words)
        return {"ok": False, "error": "out of memory now: ask again"}

    with pytest.raises(DeviceRefused, match="status: out of memory now: ask again"):
        client(device).status()
    assert len(tries) == 1 + client_mod.READ_RETRIES


def test_other_refusals_are_not_asked_again():
    tries = []

    def device(words):
        tries.append(words)
        return {"ok": False, "error": "unknown key 'x'"}

    with pytest.raises(DeviceRefused):
        client(device).config_get("x")
    assert tries == ["config get x"]
