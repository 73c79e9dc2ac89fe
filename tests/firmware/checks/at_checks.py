# AT channel checks, run on a virtual device under both interpreters. A fake modem on the
# board's modem UART answers each command line from a table of exact request -> reply bytes.
import asyncio
import json
import time

import _simcore
import _simworld
import machine
from app.modem.at import ATChannel, ATError, ATTimeout

UART_ID = json.load(open("/board.json"))["modem"]["uart"]
REPLY_DELAY_US = 2000


class FakeModem:
    def __init__(self):
        self.sent = bytearray()
        self.replies = {}  # command bytes (without "\r") -> reply bytes or a list of them
        self.after_prompt = {}  # payload bytes -> reply bytes
        self._line = bytearray()
        self._awaiting_payload = 0
        _simworld.attach_uart(UART_ID, self)

    def feed(self, data, delay_us=REPLY_DELAY_US):
        _simcore.at(_simcore.now_us + delay_us, lambda: _simworld.uart_feed(UART_ID, data))

    def receive(self, data):
        self.sent.extend(data)
        if self._awaiting_payload:
            self._awaiting_payload -= len(data)
            reply = self.after_prompt.get(bytes(data))
            if reply is not None:
                self.feed(reply)
            return
        for b in data:
            if b == 0x0D:
                line = bytes(self._line)
                self._line = bytearray()
                reply = self.replies.get(line)
                if isinstance(reply, list):
                    reply = reply.pop(0) if reply else None
                if reply is not None:
                    if reply.endswith(b">"):
                        self._awaiting_payload = 1
                    self.feed(reply)
            else:
                self._line.append(b)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


async def check_ok_with_info(modem, at):
    modem.replies[b"AT+CSQ"] = b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    info = await at.command("AT+CSQ")
    expect(info == ["+CSQ: 20,99"], repr(info))
    expect(bytes(modem.sent) == b"AT+CSQ\r", repr(modem.sent))


async def check_cme_error(modem, at):
    modem.replies[b"AT+CPIN?"] = b"\r\n+CME ERROR: 10\r\n"
    try:
        await at.command("AT+CPIN?")
        expect(False, "no error")
    except ATError as e:
        expect(e.code == 10 and "AT+CPIN?" in str(e), str(e))
    modem.replies[b"AT+CPIN?"] = b"\r\n+CME ERROR: SIM not inserted\r\n"
    try:
        await at.command("AT+CPIN?")
        expect(False, "no error")
    except ATError as e:
        expect(e.code == "SIM not inserted", repr(e.code))


async def check_urc_inside_reply(modem, at):
    seen = []
    at.on_urc("+CADATAIND:", seen.append)
    modem.replies[b"AT+CGSN"] = b"\r\n864012345678901\r\n+CADATAIND: 0\r\n\r\nOK\r\n"
    info = await at.command("AT+CGSN")
    expect(info == ["864012345678901"], repr(info))
    expect(seen == ["+CADATAIND: 0"], repr(seen))


async def check_expect_prefix_shared_with_urc(modem, at):
    urcs = []
    at.on_urc("+CEREG:", urcs.append)
    modem.replies[b"AT+CEREG?"] = b"\r\n+CEREG: 2,5,\"1A2B\",\"01C2D3E4\",9\r\n\r\nOK\r\n"
    info = await at.command("AT+CEREG?", expect="+CEREG:")
    expect(info == ['+CEREG: 2,5,"1A2B","01C2D3E4",9'] and urcs == [], repr((info, urcs)))
    modem.feed(b"\r\n+CEREG: 1\r\n", 0)
    await asyncio.sleep_ms(10)
    expect(urcs == ["+CEREG: 1"], repr(urcs))


async def check_echo_dropped(modem, at):
    modem.replies[b"AT+CGMR"] = b"AT+CGMR\r\r\nRevision:1951B16SIM7080\r\n\r\nOK\r\n"
    info = await at.command("AT+CGMR")
    expect(info == ["Revision:1951B16SIM7080"], repr(info))


async def check_timeout_then_resync(modem, at):
    # The modem answers AT+COPS? only after the channel gave up; the late OK must not be
    # taken as the next command's answer.
    modem.replies[b"AT+COPS?"] = b""
    try:
        await at.command("AT+COPS?", timeout_ms=100)
        expect(False, "no timeout")
    except ATTimeout:
        pass
    modem.feed(b"\r\n+COPS: 0,0,\"Late\",7\r\n\r\nOK\r\n", 50000)
    modem.replies[b"AT"] = b"\r\nOK\r\n"
    modem.replies[b"AT+CSQ"] = b"\r\n+CSQ: 7,0\r\n\r\nOK\r\n"
    await asyncio.sleep_ms(200)
    modem.sent = bytearray()
    info = await at.command("AT+CSQ")
    expect(bytes(modem.sent) == b"AT\rAT+CSQ\r", repr(modem.sent))
    expect(info == ["+CSQ: 7,0"], repr(info))


async def check_prompt_and_payload(modem, at):
    modem.replies[b"AT+CASEND=0,5"] = b"\r\n>"
    modem.after_prompt[b"hello"] = b"\r\nOK\r\n"
    modem.sent = bytearray()
    await at.command("AT+CASEND=0,5", payload=b"hello")
    expect(bytes(modem.sent) == b"AT+CASEND=0,5\rhello", repr(modem.sent))


async def check_error_in_place_of_the_prompt(modem, at):
    # The modem refuses the send instead of prompting: the command ends at once with the
    # error's code, and the payload is never written.
    modem.replies[b"AT+CASEND=0,5"] = b"\r\n+CME ERROR: 3\r\n"
    modem.sent = bytearray()
    t0 = time.ticks_ms()
    try:
        await at.command("AT+CASEND=0,5", payload=b"hello")
        expect(False, "no error")
    except ATError as e:
        expect(e.code == 3 and not isinstance(e, ATTimeout), repr(e))
    expect(time.ticks_diff(time.ticks_ms(), t0) < 100, "waited for the prompt")
    expect(bytes(modem.sent) == b"AT+CASEND=0,5\r", repr(modem.sent))
    modem.replies[b"AT+CASEND=0,1"] = b"\r\nOK\r\n"  # a success is no prompt either
    try:
        await at.command("AT+CASEND=0,1", payload=b"x")
        expect(False, "no error")
    except ATError as e:
        expect("before the > prompt" in str(e), str(e))


async def check_family_error_results(modem, at):
    at.add_error("+CIPERROR:")
    at.add_error("SEND FAIL")
    modem.replies[b"AT+CIPSEND=0,5"] = b"\r\n+CIPERROR: 4\r\n"
    try:
        await at.command("AT+CIPSEND=0,5", payload=b"hello")
        expect(False, "no error")
    except ATError as e:
        expect(e.code == 4, repr(e.code))
    modem.replies[b"AT+QISEND=0,5"] = b"\r\n>"
    modem.after_prompt[b"hello"] = b"\r\nSEND FAIL\r\n"
    try:
        await at.command("AT+QISEND=0,5", payload=b"hello", finals=("SEND OK",))
        expect(False, "no error")
    except ATError as e:
        expect(e.code is None and "SEND FAIL" in str(e), repr(e))


async def check_raw_data_after_a_urc(modem, at):
    # A URC's handler takes the raw bytes that follow its line (Quectel's direct push), in
    # pieces, across a command in flight, as many as fit its buffer.
    buf = bytearray(8)
    seen = []

    def pushed(stored, sent):
        seen.append((bytes(buf[:stored]), sent))

    at.on_urc("+QIURC:", lambda line: at.read_raw(int(line.split(",")[-1]), buf, pushed))
    modem.replies[b"AT+CSQ"] = b"\r\n+CSQ: 7,0\r\n\r\nOK\r\n"
    modem.feed(b'\r\n+QIURC: "recv",0,6\r\nOK\r', 0)
    modem.feed(b"\n>!", 1000)
    info = await at.command("AT+CSQ")
    expect(seen == [(b"OK\r\n>!", 6)] and info == ["+CSQ: 7,0"], repr((seen, info)))
    modem.feed(b'\r\n+QIURC: "recv",0,10\r\n0123456789\r\n', 0)
    await asyncio.sleep_ms(10)
    expect(seen[-1] == (b"01234567", 10), repr(seen))
    expect(at.garbage == 0 and at.unexpected == 0, repr((at.garbage, at.unexpected)))


async def check_data_same_line(modem, at):
    buf = bytearray(16)
    modem.replies[b"AT+CARECV=0,16"] = b"\r\n+CARECV: 6,ab\r\ncd\r\n\r\nOK\r\n"
    info = await at.command("AT+CARECV=0,16", data=("+CARECV:", b",", buf, 0))
    n = at.data_length()
    expect(n == 6 and bytes(buf[:n]) == b"ab\r\ncd", repr(buf[:n]))
    expect(info == ["+CARECV: 6"], repr(info))


async def check_data_header_line(modem, at):
    buf = bytearray(8)
    data = b"\x00\r\nOK\r\n\xff"  # looks like a final result: must be read as data
    modem.replies[b"AT+QIRD=0,8"] = b"\r\n+QIRD: 8\r\n" + data + b"\r\n\r\nOK\r\n"
    await at.command("AT+QIRD=0,8", data=("+QIRD:", b"\n", buf, 0))
    expect(at.data_length() == 8 and bytes(buf) == data, repr(buf))
    modem.replies[b"AT+CIPRXGET=2,0,8"] = (b"\r\n+CIPRXGET: 2,0,3,0\r\nxyz\r\nOK\r\n")
    info = await at.command("AT+CIPRXGET=2,0,8", data=("+CIPRXGET: 2,", b"\n", buf, 1))
    expect(at.data_length() == 3 and bytes(buf[:3]) == b"xyz", repr(buf[:3]))
    expect(info == ["+CIPRXGET: 2,0,3,0"], repr(info))


async def check_oversized_data_is_bounded(modem, at):
    buf = bytearray(4)
    modem.replies[b"AT+QIRD=0,4"] = b"\r\n+QIRD: 10\r\n0123456789\r\n\r\nOK\r\n"
    await at.command("AT+QIRD=0,4", data=("+QIRD:", b"\n", buf, 0))
    expect(at.data_length() == 4 and bytes(buf) == b"0123", repr(buf))
    expect(at.data_overflow == 6, str(at.data_overflow))


async def check_garbage_and_overlong(modem, at):
    before = at.garbage
    modem.feed(b"\xff\xfe\x80\r\n" + b"x" * 400 + b"\r\n", 0)
    await asyncio.sleep_ms(10)
    expect(at.garbage == before + 2, str(at.garbage))
    modem.replies[b"AT"] = b"\r\nOK\r\n"
    expect(await at.command("AT") == [], "still works")


async def check_unexpected_lines_counted(modem, at):
    before = at.unexpected
    modem.feed(b"\r\nOK\r\n\r\n+WHATEVER: 1\r\n", 0)
    await asyncio.sleep_ms(10)
    expect(at.unexpected == before + 2, str(at.unexpected))


def run_check(fn):
    """Each check gets a fresh fake modem and AT channel (see tests/device/checkrun.py)."""
    asyncio.run(_on_a_fresh_channel(fn))


async def _on_a_fresh_channel(fn):
    modem = FakeModem()
    at = ATChannel(machine.UART(UART_ID, 115200, rxbuf=1024))
    at.start()
    try:
        await fn(modem, at)
    finally:
        at.stop()
