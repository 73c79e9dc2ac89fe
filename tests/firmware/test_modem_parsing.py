"""The modem layer's reply parsers (app/modem/replies.py, and the few a family keeps) against
replies as the vendors' AT manuals print them.

Every case in fixtures/at_replies.json runs through the firmware's own parsers
(checks/reply_parsers.py) inside a virtual device, under MicroPython (64K heap) and under
CPython. Each family's cases go on the device's flash as a file, one JSON case a line, read
one at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from checksuite import call

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "at_replies.json").read_text())
GROUPS = ["common", "sim7080", "sim7600", "bg95"]
BOARDS = {"sim7080": "esp32-sim7080g", "sim7600": "esp32-a7670", "bg95": "esp32s3-bg95"}

# Runs on the device: maps each case's `parser` to the firmware function and compares.
PARSERS = Path(__file__).parent / "checks" / "reply_parsers.py"


@pytest.mark.parametrize("family", GROUPS)
def test_parsers_read_every_manual_reply(make_device, family):
    cases = [c for c in FIXTURES["cases"] if c["family"] == family]
    assert cases, "no fixtures for " + family
    cases_file = "\n".join(json.dumps(c) for c in cases).encode() + b"\n"
    device = make_device(BOARDS.get(family, "esp32-sim7080g"), device_modules=[PARSERS],
                         files={"cases.jsonl": cases_file})
    result = device.run(60, script=call("reply_parsers.run", family, "cases.jsonl"))
    out = result.script_output
    assert result.errors == [], out
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert failures == [], "\n".join(failures)
    assert "PASSED %d" % len(cases) in out, out
