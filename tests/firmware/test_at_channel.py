"""The AT channel against a fake modem that checks exact bytes, under both interpreters, and
fuzzed with arbitrary modem output (hypothesis) on both."""

from __future__ import annotations

from pathlib import Path

from checksuite import Suite, on_device
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CHECKS = Path(__file__).parent / "checks" / "at_checks.py"
SUITE = Suite(CHECKS, on_device(CHECKS, 600))

test_at_channel, test_at_channel_run_is_clean = SUITE.tests()


FUZZ = """
import asyncio, json
import _simcore, _simworld, machine
from app.modem.at import ATChannel, ATError, ATTimeout
UART_ID = json.load(open("/board.json"))["modem"]["uart"]
CHUNKS = {chunks!r}

def feed_later(delay_us, data):
    _simcore.at(_simcore.now_us + delay_us, lambda: _simworld.uart_feed(UART_ID, data))


class Peer:
    # Answers AT and AT+CSQ properly; anything else gets only the fuzzed bytes.
    ANSWERS = {{b"AT": b"\\r\\nOK\\r\\n", b"AT+CSQ": b"\\r\\n+CSQ: 9,0\\r\\n\\r\\nOK\\r\\n"}}

    def __init__(self):
        self.line = b""

    def receive(self, data):
        for b in data:
            if b == 13:
                answer = self.ANSWERS.get(self.line)
                self.line = b""
                if answer:
                    feed_later(1000, answer)
            else:
                self.line += bytes([b])

async def main():
    _simworld.attach_uart(UART_ID, Peer())
    at = ATChannel(machine.UART(UART_ID, 115200, rxbuf=2048))
    at.on_urc("+CEREG:", lambda line: None)
    at.start()
    for i, chunk in enumerate(CHUNKS):
        feed_later(1000 * (i + 1), chunk)
    buf = bytearray(32)
    outcome = "ok"
    try:
        await at.command("AT+QIRD=0,32", timeout_ms=200, data=("+QIRD:", b"\\n", buf, 0))
    except ATTimeout:
        outcome = "timeout"
    except ATError:
        outcome = "error"
    # Whatever came before, the channel answers the next command correctly.
    await asyncio.sleep_ms(100)
    info = await at.command("AT+CSQ", timeout_ms=1000)
    print("FUZZ", outcome, at.data_length() <= len(buf), "+CSQ: 9,0" in info)

asyncio.run(main())
"""

modem_bytes = st.one_of(
    st.binary(max_size=80),
    st.sampled_from([b"\r\nOK\r\n", b"\r\nERROR\r\n", b"\r\n+CME ERROR: 4\r\n", b">",
                     b"\r\n+QIRD: 40\r\n", b"\r\n+CEREG: 5\r\n", b"\r\n", b"\xff" * 300]),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(modem_bytes, max_size=6))
def test_fuzzed_modem_output_never_breaks_the_channel(make_device, chunks):
    device = make_device()
    result = device.run(600, script=FUZZ.format(chunks=chunks))
    assert result.errors == [], result.errors
    line = [ln for ln in result.script_output.splitlines() if ln.startswith("FUZZ")]
    assert line and line[0].endswith("True True"), result.script_output
