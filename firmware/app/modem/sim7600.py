# SIMCom SIM7600 and A7670 (the A76XX speak the same dialect), from the SIM7500_SIM7600 and
# A76XX Series AT Command Manuals. LTE Cat-1, with 2G/3G fallback on some variants, so +CGREG
# is read when +CEREG shows no service. The bearer is AT+NETOPEN (result "+NETOPEN: 0" after
# OK). Sockets are AT+CIPOPEN/CIPSEND/CIPCLOSE, each answered by its own URC after OK; data
# stays in the modem (AT+CIPRXGET=1) until read with AT+CIPRXGET=2. Result codes <err>: 1
# network failure, 2 network not opened, 3 wrong parameter, 4 operation not supported, 5
# failed to create socket, 6 failed to bind socket, 8 busy, 9 sockets opened, 10 timeout, 11
# DNS parse failed, 255 unknown error. A socket command the modem cannot carry out (a send on
# a link it no longer has) is answered "+CIPERROR: <err>" in place of ERROR.
import errno

from app.modem.base import Modem
from app.modem.replies import ModemError, bad_reply, find, num, parse_cpsi, val


class SIM7600(Modem):
    FAMILY = "sim7600"
    ICCID_CMD = "AT+CICCID"  # "+ICCID: <iccid>"
    INIT_CMDS = ("AT+CIPRXGET=1",)  # received data waits in the modem until read
    SOFT_RESET_CMD = "AT+CRESET"
    POWER_OFF_CMD = "AT+CPOF"
    REG_CMDS = ("+CEREG", "+CGREG")
    REPLY_URCS = ("+NETOPEN:", "+NETCLOSE:", "+CIPOPEN:", "+CIPCLOSE:", "+CIPSEND:")
    BOOT_URCS = ("RDY", "*ATREADY")  # the A76XX say "*ATREADY: 1" as they start
    AT_ERRORS = ("+CIPERROR:",)
    CPSI = (10, 2, -20)  # +CPSI units: RSRQ, RSRP in tenths; SINR = 2 * RSSNR - 20 dB
    RESET_PULSE_MS = 2500
    ATTACH_TIMEOUT_MS = 120000
    MAX_SEND = 1500  # AT+CIPSEND <length> 1..1500
    MAX_READ = 1500  # AT+CIPRXGET=2 <len> up to 1500

    def __init__(self, channel, board, log):
        super().__init__(channel, board, log)
        self._ip_error = None  # text of the last "+IP ERROR: ..." before an ERROR
        channel.on_urc("+CIPRXGET: 1,", self._on_data)
        channel.on_urc("+IPCLOSE:", self._on_close)
        channel.on_urc("+CIPEVENT:", self._on_event)
        channel.on_urc("+IP ERROR:", self._on_ip_error)

    def _on_data(self, line):
        self._link_event(line[13:], True)

    def _on_close(self, line):
        # +IPCLOSE: <link>,<reason>: 0 closed by us, 1 by the remote end, 2 send timeout
        self._link_event(find((line,), "+IPCLOSE:")[0], False)

    def _on_event(self, line):
        if "NETWORK CLOSED" in line:
            self._forget("bearer lost: " + line)

    def _on_ip_error(self, line):
        self._ip_error = line[10:].strip()

    async def _ip_reply(self, cmd, prefix, what, timeout_ms, **kw):
        # _reply, with the "+IP ERROR:" text the modem gave before ERROR in the message, and
        # the reply's result code checked: its fields after `prefix`, the code first.
        self._ip_error = None
        try:
            f = await self._reply(cmd, prefix, what, timeout_ms, **kw)
        except ModemError as e:
            if self._ip_error:
                raise ModemError("%s (%s)" % (e, self._ip_error), e.code)
            raise
        if num(f[0]):
            raise ModemError("%s: %s%s" % (what, prefix, ",".join(f)), num(f[0]))
        return f

    async def _lte_report(self):
        return parse_cpsi(await self._at("AT+CPSI?") or (), *self.CPSI)

    async def _config_pdp(self, apn):
        await self._at("AT+CSOCKSETPN=1", "pdp config")  # sockets use context 1

    async def _activate(self):
        if not find(await self._at("AT+NETOPEN?", "bearer read", expect="+NETOPEN:"),
                    "+NETOPEN: 1"):
            try:
                await self._ip_reply("AT+NETOPEN", "+NETOPEN:", "bearer",
                                     self.ATTACH_TIMEOUT_MS)
            except ModemError:
                if not (self._ip_error and "already opened" in self._ip_error):
                    raise
        # "+IPADDR: <ip>": the bearer's address.
        f = find(await self._at("AT+IPADDR") or (), "+IPADDR:")
        self.status["ip"] = val(f[0]) if f else None

    async def _deactivate(self):
        await self._ip_reply("AT+NETCLOSE", "+NETCLOSE:", "bearer off", self.DETACH_TIMEOUT_MS)

    async def _open(self, sock, host, port, timeout_ms):
        await self._ip_reply('AT+CIPOPEN=%d,"TCP","%s",%d' % (sock.link, host, port),
                             "+CIPOPEN: %d," % sock.link, "open %s:%d" % (host, port),
                             timeout_ms)

    async def send(self, sock, chunk):
        # "+CIPSEND: <link>,<reqSendLength>,<cnfSendLength>"; -1 confirmed: the link is down.
        # "+CIPERROR: <err>" in place of the ">" prompt ends it at once.
        n = len(chunk)
        f = await self._reply("AT+CIPSEND=%d,%d" % (sock.link, n), "+CIPSEND: %d," % sock.link,
                              "send", self.SEND_TIMEOUT_MS, self.SEND_TIMEOUT_MS, payload=chunk)
        sent = num(f[1]) if len(f) > 1 else None
        if sent != n:
            if sent == -1:
                sock.ended(errno.ECONNRESET)
            raise ModemError("send: %s of %d bytes confirmed" % (sent, n))

    async def recv(self, sock, buf):
        # Header "+CIPRXGET: 2,<link>,<read_len>,<rest_len>", the data on the next line.
        want = min(len(buf), self.MAX_READ)
        self._ip_error = None
        try:
            lines = await self._at("AT+CIPRXGET=2,%d,%d" % (sock.link, want), "read",
                                   data=("+CIPRXGET: 2,", b"\n", buf, 1))
        except ModemError:
            if self._ip_error and "No data" in self._ip_error:
                return 0, False
            raise
        f = find(lines, "+CIPRXGET: 2,")
        rest = num(f[2]) if f and len(f) == 3 else None
        if rest is None:
            raise bad_reply("read", lines)
        return self.ch.data_length(), rest > 0

    async def close_link(self, sock, was_open):
        try:
            await self._ip_reply("AT+CIPCLOSE=%d" % sock.link, "+CIPCLOSE: %d," % sock.link,
                                 "close %d" % sock.link, self.CLOSE_TIMEOUT_MS)
        except ModemError as e:
            if was_open:
                raise
            self.log.debug("modem", str(e))


Driver = SIM7600
