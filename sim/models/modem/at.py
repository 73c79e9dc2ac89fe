"""The modem's UART and command line: V.250 basics, command splitting, echo, CME errors, and
the transmit queue that delivers replies at wire speed.

UART: every reply and URC is framed "\\r\\n<line>\\r\\n" and reaches the firmware at the wire
speed of the board's baud rate, in chunks of 64 bytes, so the firmware's rxbuf fills as it
would. Echo (ATE1, the power-on default) echoes each command line and the data written after a
">" prompt. A firmware UART at another baud rate garbles both directions.

A command line runs its commands ("AT+CMEE=2;+CEREG=2") in turn; each one is the handler
`_at_<name>(kind, args)` of the model (kind "", "?", "=" or, accepted without running, "=?"),
or one of the family's socket commands (musket_sim.models.modem.sockets). A handler returns
its information lines, raises CmdError, or returns DEFER when it sends its final result itself.
"""
from musket_sim.models.modem.common import (
    DEFER,
    OFF,
    ON,
    CmdError,
    arg_int,
    ring_get,
    ring_put,
    split_args,
    split_commands,
)

_UART_CHUNK = 64  # bytes delivered to the firmware's UART per wire-time step
# The model stands for another chip: its buffers are allocated once, when the model starts (on
# the sim's side of the heap), and reused, so that its data path does not allocate from, or
# fragment, the firmware's heap.
_UART_TX_BUFFER = 8192  # replies, URCs and pushed data waiting for the wire
_UART_TX_SEGMENTS = 64  # writes (replies, URCs) waiting for the wire at once
_LINE_MAX = 556  # longest command line the modem keeps

_CME_TEXT = {
    3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
    30: "no network service", 50: "incorrect parameters", 100: "unknown",
}


class AtLine:
    # The UART and the command line (a part of Modem).

    def _init_uart(self):
        self.tx_free = 0
        # The UART transmit queue: tx_len bytes from tx_head on, in writes (segments) that each
        # start on the wire at seg_due, at seg_upb microseconds a byte; seg_sent bytes of the
        # first are delivered.
        self.tx_ring = memoryview(bytearray(_UART_TX_BUFFER))
        self.tx_head = 0
        self.tx_len = 0
        self.seg_due = [0] * _UART_TX_SEGMENTS
        self.seg_len = [0] * _UART_TX_SEGMENTS
        self.seg_upb = [0] * _UART_TX_SEGMENTS
        self.seg_first = 0
        self.seg_count = 0
        self.seg_sent = 0
        chunk = memoryview(bytearray(_UART_CHUNK))
        self.chunk = chunk
        self.chunk_views = [chunk[:k] for k in range(_UART_CHUNK + 1)]
        self.pump_at = -1
        self.pump_cb = self._pump
        self.line = bytearray()
        self.data_need = 0
        self.data_got = 0
        self.data_buf = memoryview(bytearray(self.MAX_SEND))
        self.data_done = None

    def _garbled(self):
        baud = self.world.uart_baud(self.uart_id)
        return baud is not None and baud != self.baud

    def _tx_purge(self):
        self.tx_len = 0
        self.seg_count = 0
        self.seg_sent = 0

    def _emit(self, data, delay_us=0, noise=False):
        self._send_out((data,), None, delay_us, noise)

    def _send_out(self, parts, final=None, delay_us=0, noise=False):
        # Queues one write to the firmware: parts (str: a line, framed "\r\n<line>\r\n";
        # bytes-like: raw), then the final result line if any; after delay_us, behind what is
        # already on the wire, at the wire speed. The bytes are copied into the transmit queue.
        if self.state == OFF or (self.hung and not noise):
            return
        due = self.world.now_us + delay_us
        if due < self.tx_free:
            due = self.tx_free
        start = (self.tx_head + self.tx_len) % _UART_TX_BUFFER
        n = 0
        for p in parts:
            n = self._tx_put(start, n, p)
        if final:
            n = self._tx_put(start, n, final)
        self.tx_free = due + n * self.us_per_byte
        if not n:
            return
        if self.seg_count == _UART_TX_SEGMENTS:
            raise RuntimeError("modem model: UART transmit queue full (%d writes)"
                               % _UART_TX_SEGMENTS)
        i = (self.seg_first + self.seg_count) % _UART_TX_SEGMENTS
        self.seg_due[i] = due
        self.seg_len[i] = n
        self.seg_upb[i] = self.us_per_byte
        self.seg_count += 1
        self.tx_len += n
        self._pump_later(self._head_due())

    def _tx_put(self, start, n, part):
        # Puts one part of a write behind the n bytes already put from start on: -> new n.
        if isinstance(part, str):
            line = part.encode()
            n = self._tx_put(start, n, b"\r\n")
            n = self._tx_put(start, n, line)
            return self._tx_put(start, n, b"\r\n")
        k = len(part)
        if self.tx_len + n + k > _UART_TX_BUFFER:
            raise RuntimeError("modem model: UART transmit queue full (%d bytes)"
                               % _UART_TX_BUFFER)
        if k:
            ring_put(self.tx_ring, (start + n) % _UART_TX_BUFFER, part, k)
        return n + k

    def _tx_free_bytes(self):
        return _UART_TX_BUFFER - self.tx_len

    def _head_due(self):
        # When the next chunk of the first write has left the wire.
        i = self.seg_first
        k = self.seg_len[i] - self.seg_sent
        if k > _UART_CHUNK:
            k = _UART_CHUNK
        return self.seg_due[i] + (self.seg_sent + k) * self.seg_upb[i]

    def _pump_later(self, due):
        if self.pump_at < 0 or due < self.pump_at:
            self.pump_at = due
            self.world.at(due, self.pump_cb)

    def _pump(self):
        # Delivers every chunk whose wire time is over, in chunks of _UART_CHUNK bytes.
        self.pump_at = -1
        while self.seg_count:
            due = self._head_due()
            if due > self.world.now_us:
                self._pump_later(due)
                return
            i = self.seg_first
            k = self.seg_len[i] - self.seg_sent
            if k > _UART_CHUNK:
                k = _UART_CHUNK
            ring_get(self.tx_ring, self.tx_head, self.chunk, k)
            self.tx_head = (self.tx_head + k) % _UART_TX_BUFFER
            self.tx_len -= k
            self.seg_sent += k
            if self.seg_sent == self.seg_len[i]:
                self.seg_first = (i + 1) % _UART_TX_SEGMENTS
                self.seg_count -= 1
                self.seg_sent = 0
            data = self.chunk_views[k]
            if self._garbled():
                data = self.rng.bytes(k)
            self.figures["uart_tx"] += k
            self.world.uart_feed(self.uart_id, data)

    def _urc(self, line, delay_us=0):
        self._send_out((line,), None, delay_us)

    def _delay(self):
        return self.reply_us + self.slow_us

    def _reply(self, parts, final, extra_us=0):
        self._send_out(parts, final, self._delay() + extra_us)

    def _error_text(self, code):
        if code is None or self.cmee == 0:
            return "ERROR"
        if self.cmee == 2 and code in _CME_TEXT:
            return "+CME ERROR: " + _CME_TEXT[code]
        return "+CME ERROR: %d" % code

    def receive(self, data):
        # Every firmware write on the modem UART.
        self.figures["uart_rx"] += len(data)
        if self.state != ON or self.hung or self._garbled():
            return
        i = 0
        n = len(data)
        while i < n:
            if self.data_need:
                k = min(self.data_need, n - i)
                take = memoryview(data)[i:i + k]
                i += k
                got = self.data_got
                self.data_buf[got:got + k] = take
                self.data_got = got + k
                self.data_need -= k
                if self.echo:
                    self._emit(take)
                if not self.data_need:
                    done = self.data_done
                    self.data_done = None
                    done(self.data_buf[:self.data_got])
                continue
            b = data[i]
            i += 1
            if b == 13:
                line = bytes(self.line)
                self.line = bytearray()
                self._command_line(line)
                if self.state != ON or self.hung:
                    return
            elif b == 10:
                continue
            elif b == 8:
                self.line = self.line[:-1]
            elif len(self.line) < _LINE_MAX:
                self.line.append(b)

    def _command_line(self, line):
        k = -1
        for j in range(len(line) - 1):
            if line[j] in (65, 97) and line[j + 1] in (84, 116):  # "AT", any case
                k = j
                break
        if k < 0:
            return  # no AT: not a command, ignored as the modem does
        self.read_used = 0
        if self.echo:
            self._emit(line + b"\r")
        try:
            text = line[k + 2:].decode().strip()
        except UnicodeError:
            self._reply((), "ERROR")
            return
        parts = []
        try:
            for cmd in split_commands(text) or [""]:
                r = self._execute(cmd)
                if r is DEFER:
                    return
                parts.extend(r)
        except CmdError as e:
            self._reply(parts, self._error_text(e.args[0] if e.args else None))
            return
        self._reply(parts, "OK")

    def _execute(self, cmd):
        if not cmd:
            return []
        if cmd[0] != "+":
            return self._basic(cmd)
        j = 1
        while j < len(cmd) and cmd[j] not in "=?":
            j += 1
        name = cmd[1:j].lower()
        rest = cmd[j:]
        args = ()
        if rest == "":
            kind = ""
        elif rest == "?":
            kind = "?"
        elif rest == "=?":
            kind = "=?"
        elif rest[0] == "=":
            kind = "="
            args = split_args(rest[1:])
        else:
            raise CmdError(None)
        handler = None
        if name.isalpha():
            handler = getattr(self, self.SOCKETS.handlers.get(name) or "_at_" + name, None)
        if handler is None:
            raise CmdError(None)
        if kind == "=?":
            return []  # test commands: accepted, ranges not modelled
        return handler(kind, args)

    def _basic(self, cmd):
        # V.250 basic commands: E, V, Q, Z, I, &F, &W, &D, &C, chained ("E0V1").
        i = 0
        out = []
        while i < len(cmd):
            c = cmd[i].upper()
            i += 1
            if c == "&" and i < len(cmd):
                c = "&" + cmd[i].upper()
                i += 1
            j = i
            while j < len(cmd) and cmd[j].isdigit():
                j += 1
            v = int(cmd[i:j]) if j > i else 0
            i = j
            if c == "E" and v in (0, 1):
                self.echo = v == 1
            elif c == "Z" or c == "&F":
                self.echo = True
                self.cmee = self.CMEE_DEFAULT
            elif c == "I":
                out.extend(self._ati())
            elif c in ("&W", "&D", "&C") or (c == "V" and v == 1) or (c == "Q" and v == 0):
                pass
            else:
                raise CmdError(None)
        return out

    def _ati(self):
        return [self.MANUFACTURER, self.MODEL, "Revision: " + self.REVISION.split(":")[-1]
                .strip()]

    def _expect_data(self, n, done, prompt):
        # The prompt (">"), then exactly n raw bytes for `done(payload)`. The modem takes data
        # from the moment the prompt is out, not before.
        gen = self.gen

        def ready():
            if self.gen == gen:
                self.data_need = n
                self.data_got = 0
                self.data_done = done
        self._emit(prompt, self._delay())
        self.world.at(self.tx_free, ready)

    def _at_cmee(self, kind, a):
        if kind == "?":
            return ["+CMEE: %d" % self.cmee]
        if kind != "=":
            raise CmdError(None)
        self.cmee = arg_int(a, 0, 0, 0, 2)
        return []

    def _at_ipr(self, kind, a):
        if kind == "?":
            return ["+IPR: %d" % self.baud]
        if kind != "=":
            raise CmdError(None)
        baud = arg_int(a, 0, None, 0, 4000000)
        if baud:
            self._reply((), "OK")  # the OK still goes at the old rate
            self._later(self._delay() + 1, lambda: setattr(self, "baud", baud))
            return DEFER
        return []
