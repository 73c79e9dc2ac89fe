# The AT channel fed arbitrary modem output (tests/firmware/test_at_channel.py, with
# hypothesis): whatever comes, the command in flight ends, its data stays inside its buffer,
# and the next command is answered correctly. Prints "FUZZ <outcome> <bounded> <answered>".
import asyncio
import json

import _simcore
import _simworld
import machine
from app.modem.at import ATChannel, ATError, ATTimeout

UART_ID = json.load(open("/board.json"))["modem"]["uart"]


def feed_later(delay_us, data):
    _simcore.at(_simcore.now_us + delay_us, lambda: _simworld.uart_feed(UART_ID, data))


class Peer:
    # Answers AT and AT+CSQ properly; anything else gets only the fuzzed bytes.
    ANSWERS = {b"AT": b"\r\nOK\r\n", b"AT+CSQ": b"\r\n+CSQ: 9,0\r\n\r\nOK\r\n"}

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


async def _fuzz(chunks):
    _simworld.attach_uart(UART_ID, Peer())
    at = ATChannel(machine.UART(UART_ID, 115200, rxbuf=2048))
    at.on_urc("+CEREG:", lambda line: None)
    at.start()
    for i, chunk in enumerate(chunks):
        feed_later(1000 * (i + 1), chunk)
    buf = bytearray(32)
    outcome = "ok"
    try:
        await at.command("AT+QIRD=0,32", timeout_ms=200, data=("+QIRD:", b"\n", buf, 0))
    except ATTimeout:
        outcome = "timeout"
    except ATError:
        outcome = "error"
    # Whatever came before, the channel answers the next command correctly.
    await asyncio.sleep_ms(100)
    info = await at.command("AT+CSQ", timeout_ms=1000)
    print("FUZZ", outcome, at.data_length() <= len(buf), "+CSQ: 9,0" in info)


def run(chunks):
    """Feeds `chunks` (bytes), one a millisecond, into a command in flight."""
    asyncio.run(_fuzz(chunks))
