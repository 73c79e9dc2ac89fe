# Quectel BG95/BG96, from the BG95&BG77 AT Commands Manual and the TCP/IP Application Note.
# LTE-M/NB-IoT with EGPRS fallback (BG95-M3), so +CGREG is read when +CEREG shows no service.
# Context 1 is set with AT+QICSGP and activated with AT+QIACT=1 (up to 150 s). Sockets are
# AT+QIOPEN (result "+QIOPEN: <id>,<err>" after OK), AT+QISEND (">", data, SEND OK; SEND FAIL
# when the modem's send buffer is full), AT+QIRD in buffer access mode and AT+QICLOSE, with
# "+QIURC: "recv"/"closed"/"pdpdeact"" URCs. In direct push mode (access mode 1, or a socket
# switched to it with AT+QISWTMD) the data comes unasked: "+QIURC: "recv",<id>,<len>", then
# <len> raw bytes, which go straight into the socket's buffer; both modes are read.
# +QIOPEN <err>: 552 invalid parameters, 553 memory not enough, 554 create socket failed, 555
# not supported, 556 bind failed, 561 open PDP context failed, 563 socket identity used, 564
# DNS busy, 565 DNS parse failed, 566 connect failed, 567 socket closed, 568 busy, 569
# timeout, 570 PDP context broken down, 573 APN not configured.
from app.modem.base import Modem
from app.modem.replies import ModemError, band, find, lte_act, num, val


def parse_qcsq(lines):
    # +QCSQ: <sysmode>[,<rssi>,<rsrp>,<sinr>,<rsrq>] on LTE-M/NB-IoT, SINR in fifths of a dB
    # from -20 dB (0..250); the mode alone ("NOSERVICE") without service.
    f = find(lines, "+QCSQ:")
    if not f:
        return {}
    out = {"act": lte_act(f[0])}
    if len(f) == 5 and out["act"] in ("LTE-M", "NB-IoT"):
        sinr = num(f[3])
        out["rsrp"] = num(f[2])
        out["sinr"] = sinr / 5 - 20 if sinr is not None else None
        out["rsrq"] = num(f[4])
    return out


def parse_qnwinfo(lines):
    # +QNWINFO: <Act>,<oper>,<band>,<channel> ("46000" as "460-00"), or "No Service".
    f = find(lines, "+QNWINFO:")
    if not f:
        return {}
    out = {"act": lte_act(f[0])}
    if len(f) > 2 and out["act"]:
        op = val(f[1])
        out["operator"] = op[:3] + "-" + op[3:] if op.isdigit() and len(op) > 4 else op
        out["band"] = band(f[2])
    return out


class BG95(Modem):
    FAMILY = "bg95"
    ICCID_CMD = "AT+QCCID"  # "+QCCID: <iccid>", 19-digit ones padded with F
    POWER_OFF_CMD = "AT+QPOWD"  # OK, then "POWERED DOWN"
    REG_CMDS = ("+CEREG", "+CGREG")
    # Quectel numbers <AcT> 8 as eMTC (LTE-M) and 9 as NB-IoT; 7 is LTE-M on this modem too.
    ACT_NAMES = "GSM GSM UMTS EDGE HSPA HSPA HSPA LTE-M LTE-M NB-IoT"
    REPLY_URCS = ("+QIOPEN:",)
    AT_ERRORS = ("SEND FAIL",)  # the send's own error result
    RESET_PULSE_MS = 3000
    ATTACH_TIMEOUT_MS = 150000  # AT+QIACT: 150 s maximum response time
    CLOSE_TIMEOUT_MS = 12000  # AT+QICLOSE waits up to 10 s for the FIN by default
    MAX_SEND = 1460  # AT+QISEND <send_length> up to 1460
    MAX_READ = 1500  # AT+QIRD <read_length> up to 1500
    # "+QIRD: <read_actual_length>", the data on the next line; "+QIRD: 0" when empty.
    READ_COMMAND = "AT+QIRD=%d,%d"
    READ_DATA = ("+QIRD:", b"\n", 0)
    # Also after "closed": the connectID stays taken until AT+QICLOSE.
    CLOSE_COMMAND = "AT+QICLOSE=%d"
    ACCESS_MODE = 0  # AT+QIOPEN <access_mode>: 0 buffer, 1 direct push

    def __init__(self, channel, board, log):
        super().__init__(channel, board, log)
        self._push = None  # the socket the data being pushed goes to
        self._pushed_cb = self._pushed  # made once: the AT channel calls it per push
        channel.on_urc("+QIURC:", self._on_qiurc)

    def _on_qiurc(self, line):
        f = find((line,), "+QIURC:")
        kind = val(f[0])
        if kind == "pdpdeact":
            self._forget("bearer lost: " + line)
        elif kind == "recv" and len(f) == 3:  # direct push: the data follows this line
            self._push = self._socket(f[1])
            n = num(f[2]) or 0
            self.ch.read_raw(n, self._push.room() if self._push else None, self._pushed_cb)
        elif kind in ("recv", "closed") and len(f) > 1:
            self._link_event(f[1], kind == "recv")

    def _pushed(self, stored, sent):
        sock, self._push = self._push, None
        if sock is not None:
            sock.pushed(stored, sent)
        elif sent:
            self.log.debug("modem", "pushed data for no socket: %d bytes" % sent)

    async def _lte_report(self):
        out = parse_qnwinfo(await self._at("AT+QNWINFO") or ())
        out.update(parse_qcsq(await self._at("AT+QCSQ") or ()))
        return out

    async def _config_pdp(self, apn):
        await self._at('AT+QICSGP=1,1,"%s","","",0' % apn, "pdp config")

    async def _bearer(self):
        # +QIACT: <contextID>,<state>,<type>,<address>, one line per active context: whether
        # context 1 is up, its address into status.
        for line in await self._at("AT+QIACT?", "bearer read"):
            f = find((line,), "+QIACT: 1,1,")
            if f:
                self.status["ip"] = val(f[-1])
                return True
        return False

    async def _activate(self):
        if not await self._bearer():
            await self._at("AT+QIACT=1", "bearer", self.ATTACH_TIMEOUT_MS)
            await self._bearer()

    async def _deactivate(self):
        await self._at("AT+QIDEACT=1", "bearer off", self.DETACH_TIMEOUT_MS)

    async def _open(self, sock, host, port, timeout_ms):
        what = "open %s:%d" % (host, port)
        f = await self._reply('AT+QIOPEN=1,%d,"TCP","%s",%d,0,%d' % (
            sock.link, host, port, self.ACCESS_MODE), "+QIOPEN: %d," % sock.link, what,
            timeout_ms)
        if num(f[0]) != 0:
            raise ModemError("%s: +QIOPEN error %s" % (what, f[0]), num(f[0]))

    async def send(self, sock, chunk):
        # SEND OK: taken into the modem's buffer; SEND FAIL: that buffer is full; ERROR in
        # place of the ">" prompt: a link the modem no longer has. Each ends it at once.
        await self._at("AT+QISEND=%d,%d" % (sock.link, len(chunk)), "send",
                       self.SEND_TIMEOUT_MS, payload=chunk, finals=("SEND OK",))


Driver = BG95
