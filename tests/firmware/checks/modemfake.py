# The fake modem and the harness the modem driver tests (tests/firmware/test_modem_*.py)
# run their steps with on a virtual device: the fake attaches to the board's modem UART and
# answers exact requests from a table; a step shows what it saw as "TAG <json>" lines, and
# the requests the driver sent end the output as "SENT <repr>".
import asyncio
import json
import time

import _simcore
import _simworld
import machine
from app.modem import driver_class
from app.modem.at import ATChannel


class Fake:
    # table: request bytes -> a reply, or a list of replies used in turn (the last repeats).
    # A reply is bytes, sent 1 ms later, or a tuple of (delay_ms, bytes). hooks: request ->
    # callable run when the request arrives (a modem that powers down, say); a step sets them.
    def __init__(self, uart_id, table):
        self.uart_id = uart_id
        self.table = table
        self.hooks = {}
        self.sent = []

    def receive(self, data):
        data = bytes(data)
        self.sent.append(data)
        if data in self.hooks:
            self.hooks[data]()
        reply = self.table.get(data)
        if isinstance(reply, list):
            reply = reply.pop(0) if len(reply) > 1 else reply[0]
        if isinstance(reply, bytes):
            reply = ((1, reply),)
        for ms, chunk in reply or ():
            self.later(ms, chunk)

    def later(self, ms, chunk):
        _simcore.at(_simcore.now_us + ms * 1000, lambda: _simworld.uart_feed(self.uart_id, chunk))


BOARD = json.load(open("/board.json"))


class Log:
    # What the drivers log, kept for the test to show (app.log.Log's interface, less heap).
    def __init__(self):
        self.lines = []

    def _add(self, tag, message):
        self.lines.append(message)

    debug = info = warning = error = _add

    def exception(self, tag, message, exc):
        self.lines.append(message)


def show(tag, value):
    print(tag, json.dumps(value))


def failure(e):
    return [type(e).__name__, str(e), getattr(e, "code", None)]


def oserror(e):
    # A socket's failure: OSError (CPython makes a subclass of it by errno), errno, message.
    return ["OSError" if isinstance(e, OSError) else type(e).__name__, e.errno, str(e)]


def ms():
    return time.ticks_ms()


def run(table, step, args=()):
    """Runs `step(modem, fake, ch, *args)` against a fake answering from `table`, with the
    board's own driver on a fresh AT channel."""
    async def main():
        fake = Fake(BOARD["modem"]["uart"], table)
        _simworld.attach_uart(fake.uart_id, fake)
        log = Log()
        ch = ATChannel(machine.UART(fake.uart_id, BOARD["modem"]["baudrate"]), log)
        ch.start()
        modem = driver_class(BOARD["modem"]["family"])(ch, BOARD, log)
        try:
            await step(modem, fake, ch, *args)
        finally:
            print("SENT", repr(fake.sent))
            ch.stop()
    asyncio.run(main())
