"""The modem layer's reply parsers (app/modem/replies.py, and the few a family keeps) against
replies as the vendors' AT manuals print them.

Every case in fixtures/at_replies.json runs through the firmware's own parsers inside a
virtual device, under MicroPython (64K heap) and under CPython. The device's filesystem is its
flash image, so each family's cases go into the script as a literal, one JSON case a line,
read one at a time; one run per family keeps that literal, and the heap it takes, small.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "at_replies.json").read_text())
GROUPS = ["common", "sim7080", "sim7600", "bg95"]
BOARDS = {"sim7080": "esp32-sim7080g", "sim7600": "esp32-a7670", "bg95": "esp32s3-bg95"}

# Runs on the device: maps each case's `parser` to the firmware function and compares.
SCRIPT = r"""
import json
from app.modem import replies
FAMILY = %(family)r
if FAMILY == "common":
    ACT, CPSI = replies.ACT_NAMES, None
else:
    from app.modem import driver_class
    Driver = driver_class(FAMILY)
    ACT, CPSI = Driver.ACT_NAMES, getattr(Driver, "CPSI", None)
if FAMILY == "bg95":
    from app.modem.bg95 import parse_qcsq, parse_qnwinfo
if FAMILY == "sim7080":
    from app.modem.sim7080 import parse_cnact


def parse(case):
    p, reply = case["parser"], case["reply"]
    if p in ("iccid", "imei", "imsi", "revision"):
        return replies.parse_id(reply, p)
    if p == "csq":
        return replies.parse_csq(reply)
    if p == "cereg":
        return replies.parse_cereg(reply[0], ACT)
    if p == "cgdcont":
        return [list(t) for t in replies.parse_cgdcont(reply)]
    if p == "cops":
        return replies.parse_cops(reply)
    if p in ("cpin", "ceer"):
        return replies.text(reply, "+" + p.upper() + ":")
    if p == "cpsi":
        return replies.parse_cpsi(reply, *CPSI)
    if p == "cnact":
        return list(parse_cnact(reply))
    if p == "qcsq":
        return parse_qcsq(reply)
    if p == "qnwinfo":
        return parse_qnwinfo(reply)
    if p == "result":
        return replies.result(reply, case["prefix"])
    raise ValueError("no parser " + p)


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) < 1e-6
    if isinstance(a, dict):
        return isinstance(b, dict) and sorted(a) == sorted(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


CASES = %(cases)r  # one JSON case a line, parsed one at a time to spare the heap
passed = 0
start = 0
while start < len(CASES):
    end = CASES.find("\n", start)
    end = len(CASES) if end < 0 else end
    case = json.loads(CASES[start:end])
    start = end + 1
    try:
        got = parse(case)
        if "error" in case:
            print("FAIL", case["name"], "no error, got", json.dumps(got))
        elif same(got, case["expect"]):
            passed += 1
        else:
            print("FAIL", case["name"], "got", json.dumps(got), "want", json.dumps(case["expect"]))
    except replies.ModemError as e:
        if "error" in case and case["error"] in str(e):
            passed += 1
        else:
            print("FAIL", case["name"], "raised", repr(str(e)))
print("PASSED", passed)
"""


@pytest.mark.parametrize("family", GROUPS)
def test_parsers_read_every_manual_reply(make_device, family):
    cases = [c for c in FIXTURES["cases"] if c["family"] == family]
    assert cases, "no fixtures for " + family
    device = make_device(BOARDS.get(family, "esp32-sim7080g"))
    result = device.run(60, script=SCRIPT % {
        "family": family, "cases": "\n".join(json.dumps(c) for c in cases)})
    out = result.script_output
    assert result.errors == [], out
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert failures == [], "\n".join(failures)
    assert "PASSED %d" % len(cases) in out, out
