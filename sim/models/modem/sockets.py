"""The AT side of the modem's sockets, one shape for every family.

Each family names its socket commands and words their answers differently (AT+CASEND on the
SIM7080, AT+CIPSEND on the SIM7600, AT+QISEND on the BG95), but sending, closing, the open's
result, a read's reply and the data/closed URCs work alike: a family's `SOCKETS` (a Dialect)
holds the differences, and the handlers here read it. What differs in shape (the open's
arguments, the read command's modes, the state query) stays with the family.
"""
from dataclasses import dataclass
from functools import cached_property

from musket_sim.models.modem.common import DEFER, L_CLOSED, L_OPEN, CmdError, arg_int
from musket_sim.models.modem.tcpip import CLOSE_BYTES


@dataclass(frozen=True)
class Dialect:
    # A family's socket commands and their answers. Formats take the link id first.
    send: str  # AT+<send>=<link>,<length>: the prompt, then the bytes
    close: str  # AT+<close>=<link>
    open_result: str  # "<link>,<result code>": the open's outcome
    data_urc: str  # "<link>": data came into an empty buffer
    closed_urc: str  # "<link>": the peer closed the socket
    open_urc: bool = False  # the open answers OK at once, its result as a URC (else before OK)
    no_link: int | None = None  # CME error for a socket not there (None: plain ERROR)
    prompt: bytes = b"\r\n> "
    sent: str = "OK"  # the send's result once the bytes are taken
    send_failed: str = "ERROR"  # ... when the socket closed meanwhile
    sent_urc: str = ""  # "<link>,<asked>,<sent>" behind the send's result; "": none
    send_refused: str = ""  # in place of the prompt when the socket cannot send; "": no_link
    sent_query: str = ""  # "<sent>,<acked>": AT+<send>=<link>,0 asks this; "": 0 is refused
    close_urc: str = ""  # "<link>": behind the close's OK; "": none
    close_absent_ok: bool = False  # closing a socket that is not there succeeds
    push_head: bytes = b""  # "<link>,<length>": header of data pushed to the UART
    # A read's reply, as "%(name)d" formats of id (the link), n (bytes read) and left (bytes
    # still buffered): the header in front of the data, and the line when nothing was read.
    read_head: str = ""
    read_empty: str = ""

    @cached_property
    def handlers(self):
        # command name -> the model's handler
        return {self.send: "_sock_send", self.close: "_sock_close"}


class Sockets:
    # The family's socket commands and URCs (a part of Modem).

    def _link_arg(self, a, i=0):
        lid = arg_int(a, i)
        if lid < 0 or lid >= self.LINK_COUNT:
            raise CmdError(50)
        return lid

    def _link(self, lid):
        # The socket lid, or the family's error for a socket that is not there.
        link = self.links.get(lid)
        if link is None:
            raise CmdError(self.SOCKETS.no_link)
        return link

    def _open_socket(self, lid, host, port, code, push=None):
        # The open of socket lid to host:port, unless the family refused it already (code, its
        # result). The outcome is the family's result line a round trip later; push(), when
        # given, says whether the open socket pushes its data.
        if self.SOCKETS.open_urc:
            self._reply((), "OK")
        if code is not None:
            self._open_result(lid, code, self._delay())
            return DEFER

        def report(outcome):
            if outcome == "ok" and push is not None:
                self.links[lid].push = push()
            self._open_result(lid, self.CODES[outcome], 0)
        self._open_later(lid, host, port, report)
        return DEFER

    def _open_result(self, lid, code, delay_us):
        d = self.SOCKETS
        line = d.open_result % (lid, code)
        if d.open_urc:
            self._urc(line, delay_us)
        else:
            self._reply([line], "OK")

    def _open_later(self, lid, host, port, report):
        # Runs the open now and reports `report(outcome)` a round trip later.
        outcome = self._open(lid, host, port)

        def done():
            report(outcome)
            link = self.links.get(lid)
            if outcome == "ok" and self.w_close_next and link is not None:
                # The network ends it at once: the close URC right behind the result.
                self.w_close_next = False
                self._release(link)
                link.state = L_CLOSED
                self._count(link, up=CLOSE_BYTES, down=CLOSE_BYTES)
                self._urc_closed(link)
        self._later(self._rtt(), done)

    def _sock_send(self, kind, a):
        d = self.SOCKETS
        if kind != "=":
            raise CmdError(None)
        lid = self._link_arg(a)
        link = self.links.get(lid)
        n = arg_int(a, 1, None, 0 if d.sent_query else 1, self.MAX_SEND)
        if n == 0:
            link = self._link(lid)
            return [d.sent_query % (link.sent, link.sent)]
        if link is None or link.state != L_OPEN or not self._up_room(link, n):
            if d.send_refused:
                self._reply((), d.send_refused)
                return DEFER
            raise CmdError(d.no_link)

        def done(data):
            if link.state == L_OPEN:
                self._send(link, data)
                self._reply((), d.sent)
                if d.sent_urc:
                    self._urc(d.sent_urc % (lid, n, n), self._delay())
            else:
                self._reply((), d.send_failed)
        self._expect_data(n, done, d.prompt)
        return DEFER

    def _sock_close(self, kind, a):
        d = self.SOCKETS
        if kind != "=":
            raise CmdError(None)
        lid = self._link_arg(a)
        if lid not in self.links and d.close_absent_ok:
            return []
        link = self._link(lid)
        self._close(link)
        if not d.close_urc:
            return []
        self._reply((), "OK")
        self._urc(d.close_urc % link.id, self._delay())
        return DEFER

    def _read_reply(self, link, n):
        # Up to n buffered bytes of the link, as the family's read command answers them.
        d = self.SOCKETS
        data = self._take(link, n)
        fields = {"id": link.id, "n": len(data), "left": link.rx_len}
        if not data:
            return [d.read_empty % fields]
        return [(d.read_head % fields).encode(), data, b"\r\n"]

    def _urc_data(self, link):
        self._urc(self.SOCKETS.data_urc % link.id)

    def _urc_closed(self, link):
        self._urc(self.SOCKETS.closed_urc % link.id)

    def _push(self, link, n):
        # Direct push mode: the family's header, then the n bytes that just arrived.
        self.read_used = 0
        self._send_out((self.SOCKETS.push_head % (link.id, n), self._take(link, n)))
