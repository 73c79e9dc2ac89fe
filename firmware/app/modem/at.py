# The AT channel: the one place that reads and writes the modem's UART.
#
# One reader task splits what the modem sends into lines, hands unsolicited result codes (URCs)
# to handlers from a dispatch table, and gives the command in flight its information lines and
# its final result (OK, ERROR, +CME ERROR: n, +CMS ERROR: n, or a family's own such as
# SEND OK). An error result where a ">" prompt was expected ends the command at once. Binary
# data announced by a length header (+CARECV, +CIPRXGET, +QIRD) is read raw into the caller's
# buffer; data a URC announces (Quectel's direct push) into the buffer its handler names.
# Buffers are allocated once; a line longer than the buffer is dropped and counted, never
# grown into.
import asyncio
import time

from app.errors import FirmwareError

from micropython import const


_LINE_MAX = const(256)  # longest line kept; longer ones are garbage (or data read raw)
_DEFAULT_TIMEOUT_MS = const(5000)  # 27.007 commands answer in well under this
_READ_CHUNK = const(64)  # bytes taken from the UART per read
_QUIET_MS = const(200)  # a line silent this long has no more late replies on it

_OK = const("OK")
_ERRORS = const(("ERROR", "NO CARRIER", "NO DIALTONE", "BUSY", "NO ANSWER"))


class ATError(FirmwareError):
    # The modem answered with an error, or what it answered makes no sense.
    def __init__(self, command, message, code=None):
        super().__init__("%s: %s" % (command, message))
        self.command = command
        self.code = code


class ATTimeout(ATError):
    # No final result in time: the modem may be busy, hung or off.
    pass


class ATChannel:
    def __init__(self, uart, log=None):
        self._uart = uart
        self._log = log
        self._reader = asyncio.StreamReader(uart)
        self._line = bytearray(_LINE_MAX)
        self._len = 0
        self._overlong = False
        self._chunk = bytearray(_READ_CHUNK)
        self._chunk_mv = memoryview(self._chunk)
        self._urcs = []  # (prefix, handler) in registration order
        self._busy = False  # a command is in flight; the next waits for _idle
        self._idle = asyncio.Event()
        self._done = asyncio.Event()
        self._prompt = asyncio.Event()
        self._cmd = None  # command in flight
        self._expect = None  # prefix of its information lines, when a URC shares it
        self._info = None  # its information lines
        self._final = None  # its final result line
        self._finals = ()  # success results besides OK for the command in flight
        self._data = None  # (prefix, terminator byte, buffer) for a raw read in flight
        self._data_len = 0  # bytes of the command's raw data stored in its buffer
        self._raw_left = 0  # bytes of raw data still to come
        self._sink = None  # where they go (the command's buffer, or a URC handler's)
        self._sink_len = 0  # bytes stored there so far
        self._sink_done = None  # a URC handler's done(stored, sent), or None for a command
        self._sink_size = 0
        self._sink_n = 0
        # Error results: the +CME/+CMS errors, with a code after the colon, and a family's
        # own (SIMCom's "+CIPERROR: <n>", Quectel's "SEND FAIL"); see add_error().
        self.errors = ("+CME ERROR:", "+CMS ERROR:")
        self._dirty = False  # a command timed out: resynchronise before the next
        self._last_rx = time.ticks_ms()
        self._task = None
        self.garbage = 0  # lines dropped as unreadable or overlong
        self.unexpected = 0  # lines that were neither a reply nor a known URC
        self.data_overflow = 0  # raw bytes that did not fit the caller's buffer

    # -- set-up -------------------------------------------------------------------------

    def on_urc(self, prefix, handler):
        # handler(line) runs in the reader task: keep it short, set an Event, never await.
        self._urcs.append((prefix, handler))

    def add_error(self, prefix):
        # A family's own error result: a line starting with `prefix` ends the command in flight
        # as an ATError, its code what follows a colon, if any.
        self.errors = self.errors + (prefix,)

    def read_raw(self, n, buf, done):
        # From a URC handler: the n bytes after the URC's line are data for buf (as many as
        # fit; None drops them); done(stored, n) runs in the reader once all n went by.
        if n <= 0:
            done(0, 0)
            return
        self._raw_left = n
        self._sink = buf
        self._sink_size = len(buf) if buf is not None else 0
        self._sink_len = 0
        self._sink_n = n
        self._sink_done = done

    def start(self):
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # -- commands -----------------------------------------------------------------------

    async def command(self, cmd, timeout_ms=_DEFAULT_TIMEOUT_MS, expect=None, finals=None,
                      payload=None, data=None):
        # Sends `cmd`, returns its information lines (a list of str) on a success result.
        # `expect`: prefix of the reply's information lines where a URC looks the same
        #   (+CEREG: answers AT+CEREG? and is also a URC).
        # `finals`: extra success results for this command (e.g. ("SEND OK",)).
        # `payload`: bytes written after the modem's ">" prompt (a socket send).
        # `data`: (prefix, terminator, buffer, field): a line starting with `prefix` announces
        #   a length (its comma-separated `field` after the prefix), the header ending at
        #   `terminator` (b"," when data follows on the same line, b"\n" when on the next);
        #   that many raw bytes follow and go into `buffer`. data_length() says how many
        #   were stored; the header is returned among the information lines.
        # One command at a time. An Event, not an asyncio.Lock: the lock's module would cost
        # heap for this one use.
        while self._busy:
            self._idle.clear()
            await self._idle.wait()
        self._busy = True
        try:
            if self._dirty:
                await self._resync(min(timeout_ms, _DEFAULT_TIMEOUT_MS))
            return await self._exchange(cmd, timeout_ms, expect, finals, payload, data)
        finally:
            self._busy = False
            self._idle.set()

    def data_length(self):
        return self._data_len

    async def _exchange(self, cmd, timeout_ms, expect, finals, payload, data):
        self._cmd = cmd
        self._expect = expect
        self._info = []
        self._final = None
        self._finals = finals or ()
        self._data = (data[0].encode(), data[1][0], data[2], data[3]) if data else None
        self._data_len = 0
        self._done.clear()
        self._prompt.clear()
        try:
            self._uart.write((cmd + "\r").encode())
            if payload is not None:
                # A final result instead of the prompt (an error: the link is gone, the
                # modem is busy) wakes this wait too, and ends the command without the data.
                await asyncio.wait_for_ms(self._prompt.wait(), timeout_ms)
                if self._final is None:
                    self._uart.write(payload)
                elif self._final == _OK:
                    self._final = "OK before the > prompt"
            await asyncio.wait_for_ms(self._done.wait(), timeout_ms)
        except asyncio.TimeoutError:
            self._dirty = True
            raise ATTimeout(cmd, "no reply in %d ms" % timeout_ms)
        finally:
            self._cmd = None
            self._data = None
            if self._sink_done is None:  # the command's own raw read, cut short; a URC's
                self._raw_left = 0       # (pushed data) goes on
                self._sink = None
        final = self._final or ""
        info = self._info
        self._info = None
        if final == _OK or final in self._finals:
            return info
        code = None
        if self._is_error(final) and ":" in final:
            code = final[final.find(":") + 1:].strip()
            code = int(code) if code.isdigit() else code
        raise ATError(cmd, final, code)

    def _is_error(self, line):
        for prefix in self.errors:
            if line.startswith(prefix):
                return True
        return False

    async def _resync(self, timeout_ms):
        # After a timeout, late replies may still be on their way, more than one if the modem
        # was busy (booting, searching). Wait for the line to go quiet, then send "AT": the
        # two ends agree again once an "AT" gets its OK and nothing else follows it.
        self._dirty = False
        self._len = 0
        while True:
            await self._quiet()
            try:
                await self._exchange("AT", timeout_ms, None, None, None, None)
            except ATTimeout:
                self._dirty = True
                raise
            strays = self.unexpected
            await self._quiet()
            if self.unexpected == strays:
                return

    async def _quiet(self):
        while time.ticks_diff(time.ticks_ms(), self._last_rx) < _QUIET_MS:
            await asyncio.sleep_ms(_QUIET_MS)

    # -- reader -------------------------------------------------------------------------

    async def _run(self):
        while True:
            n = await self._reader.readinto(self._chunk)
            if n:
                self._last_rx = time.ticks_ms()
                self._consume(self._chunk, n)

    def _consume(self, chunk, n):
        i = 0
        while i < n:
            if self._raw_left:
                i += self._take_data(chunk, i, n)
                continue
            b = chunk[i]
            i += 1
            if b == 0x0A:  # "\n" ends a line
                if not (self._data is not None and self._data[1] == 0x0A and
                        self._start_data()):
                    self._end_line()
            elif b == 0x0D:  # "\r" is dropped: modems end lines with "\r\n"
                pass
            elif self._len < _LINE_MAX:
                self._line[self._len] = b
                self._len += 1
                if self._len == 1 and b == 0x3E and self._cmd is not None:  # ">" prompt
                    self._len = 0
                    self._prompt.set()
                elif self._data is not None and b == self._data[1] == 0x2C:
                    self._start_data()
            else:
                self._overlong = True

    def _start_data(self):
        # Returns True when the line so far is the announced data header.
        prefix, _, _, field = self._data
        head = bytes(self._line[:self._len])
        if not head.startswith(prefix):
            return False
        fields = head[len(prefix):].strip().strip(b",").split(b",")
        try:
            n = int(fields[field])
        except (ValueError, IndexError):
            return False
        self._len = 0
        self._raw_left = n
        self._sink = self._data[2]
        self._sink_size = len(self._sink)
        self._sink_len = 0
        self._sink_done = None
        if self._info is not None:
            self._info.append(head.decode().strip().strip(","))
        return True

    def _take_data(self, chunk, i, n):
        # chunk is self._chunk (the reader's only buffer): copied through its memoryview,
        # made once, so that no slice of it is allocated per piece of data.
        take = min(self._raw_left, n - i)
        got = self._sink_len
        room = max(0, min(take, self._sink_size - got))
        if room:
            self._sink[got:got + room] = self._chunk_mv[i:i + room]
            self._sink_len = got + room
        self.data_overflow += take - room
        self._raw_left -= take
        if not self._raw_left:
            done = self._sink_done
            self._sink = self._sink_done = None
            if done is None:
                self._data_len = self._sink_len
            else:
                done(self._sink_len, self._sink_n)
        return take

    def _end_line(self):
        if self._overlong:
            self._overlong = False
            self._len = 0
            self.garbage += 1
            return
        if self._len == 0:
            return
        try:
            # Decoded straight from the line buffer: no copies of it per line.
            line = str(memoryview(self._line)[:self._len], "utf-8").strip()
        except UnicodeError:
            line = None
        self._len = 0
        if line is None:
            self.garbage += 1
        elif line:
            self._route(line)

    def _route(self, line):
        cmd = self._cmd
        if cmd is not None:
            if line == cmd:  # the modem echoing our command
                return
            if line == _OK or line in self._finals or line in _ERRORS or \
                    self._is_error(line):
                self._final = line
                self._done.set()
                self._prompt.set()  # a send waiting for its prompt gets this instead
                return
            if self._expect is not None and line.startswith(self._expect):
                self._info.append(line)
                return
        for prefix, handler in self._urcs:
            if line.startswith(prefix):
                try:
                    handler(line)
                except Exception as e:  # noqa: BLE001 - a bad URC must not stop the reader
                    self.garbage += 1
                    if self._log:
                        self._log.exception("at", "URC " + prefix, e)
                return
        if cmd is not None:
            self._info.append(line)
        else:
            self.unexpected += 1
            if self._log:
                self._log.debug("at", "unexpected: " + line)
