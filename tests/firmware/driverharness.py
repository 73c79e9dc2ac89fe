"""The harness of the modem driver tests (test_modem_drivers.py, test_modem_field_ways.py):
each test runs a script on a virtual device (the family's board), under MicroPython (64K heap)
and under CPython. The fake attaches to the modem UART through _simworld and answers exact
requests from a table, one virtual millisecond later (or after the delay a reply names), so
the tests check the exact bytes each driver sends and what it makes of the answers.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

FAMILIES = ["sim7080", "sim7600", "bg95"]
BOARDS = {"sim7080": "esp32-sim7080g", "sim7600": "esp32-a7670", "bg95": "esp32s3-bg95"}
CME = json.loads((Path(__file__).parent / "fixtures" / "at_replies.json").read_text())["cme"]

# The fake modem and the harness (checks/modemfake.py) and the steps each test runs on the
# device (checks/driver_*.py): modules on the device's flash, compiled with mpy-cross for
# MicroPython as the firmware is, so compiling them costs the 64K heap nothing.
CHECKS = Path(__file__).parent / "checks"
SCRIPT = "from modemfake import run\nimport {module}\nrun({table}, {module}.{step}, {args!r})\n"


OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"


def info(*lines: str) -> bytes:
    """A reply: information lines, then OK, framed as the modem frames them."""
    return b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines) + OK


def render(table: dict) -> str:
    return "{" + ", ".join("%r: %r" % (k, v) for k, v in table.items()) + "}"


def run(make_device, family, table, step, args=()):
    """Runs `step` ("module.function", an `async def step(modem, fake, ch, *args)` in
    checks/) against the fake answering from `table`; returns the requests the driver sent
    and the values the step showed."""
    module, function = step.split(".")
    device = make_device(BOARDS[family], device_modules=[CHECKS / "modemfake.py",
                                                         CHECKS / (module + ".py")])
    script = SCRIPT.format(module=module, table=render(table), step=function, args=tuple(args))
    result = device.run(3600, script=script)
    out = result.script_output
    assert result.errors == [], out
    sent, shown = None, {}
    for line in out.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "SENT":
            sent = ast.literal_eval(rest)
        elif tag.isupper() and rest:
            shown[tag] = json.loads(rest)
    assert sent is not None, out
    return sent, shown


COPS = b"AT+COPS?\r"
# Open, send, receive and close on each family: (table, the requests in order, the URC of
# a close by the remote end).
SOCKET = {
    "sim7080": (
        {b'AT+CAOPEN=0,0,"TCP","broker.example",1883\r': info("+CAOPEN: 0,0"),
         b"AT+CASEND=0,4\r": b"\r\n> ", b"AT+CASEND=0,1\r": b"\r\n> ",
         b"hell": OK, b"o": ((1, OK), (50, b"\r\n+CADATAIND: 0\r\n")),
         b"AT+CARECV=0,512\r": b"\r\n+CARECV: 5,world\r\nOK\r\n",
         b"AT+CACLOSE=0\r": ERROR},
        [b'AT+CAOPEN=0,0,"TCP","broker.example",1883\r', b"AT+CASEND=0,4\r", b"hell",
         b"AT+CASEND=0,1\r", b"o", b"AT+CARECV=0,512\r", b"AT+CACLOSE=0\r"],
        b"\r\n+CASTATE: 0,0\r\n",
    ),
    "sim7600": (
        {b'AT+CIPOPEN=0,"TCP","broker.example",1883\r': OK + b"\r\n+CIPOPEN: 0,0\r\n",
         b"AT+CIPSEND=0,4\r": b"\r\n>", b"AT+CIPSEND=0,1\r": b"\r\n>",
         b"hell": OK + b"\r\n+CIPSEND: 0,4,4\r\n",
         b"o": ((1, OK + b"\r\n+CIPSEND: 0,1,1\r\n"), (50, b"\r\n+CIPRXGET: 1,0\r\n")),
         b"AT+CIPRXGET=2,0,512\r": b"\r\n+CIPRXGET: 2,0,5,0\r\nworld\r\nOK\r\n",
         b"AT+CIPCLOSE=0\r": b"\r\n+CIPCLOSE: 0,4\r\n" + ERROR},
        [b'AT+CIPOPEN=0,"TCP","broker.example",1883\r', b"AT+CIPSEND=0,4\r", b"hell",
         b"AT+CIPSEND=0,1\r", b"o", b"AT+CIPRXGET=2,0,512\r", b"AT+CIPCLOSE=0\r"],
        b"\r\n+IPCLOSE: 0,1\r\n",
    ),
    "bg95": (
        {b'AT+QIOPEN=1,0,"TCP","broker.example",1883,0,0\r': OK + b"\r\n+QIOPEN: 0,0\r\n",
         b"AT+QISEND=0,4\r": b"\r\n> ", b"AT+QISEND=0,1\r": b"\r\n> ",
         b"hell": b"\r\nSEND OK\r\n",
         b"o": ((1, b"\r\nSEND OK\r\n"), (50, b'\r\n+QIURC: "recv",0\r\n')),
         b"AT+QIRD=0,512\r": b"\r\n+QIRD: 5\r\nworld\r\n\r\nOK\r\n",
         b"AT+QICLOSE=0\r": OK},
        [b'AT+QIOPEN=1,0,"TCP","broker.example",1883,0,0\r', b"AT+QISEND=0,4\r", b"hell",
         b"AT+QISEND=0,1\r", b"o", b"AT+QIRD=0,512\r", b"AT+QICLOSE=0\r"],
        b'\r\n+QIURC: "closed",0\r\n',
    ),
}
