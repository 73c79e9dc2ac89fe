# Quectel BG95/BG96, from the BG95&BG77 AT Commands Manual and the TCP/IP Application Note.
# LTE-M/NB-IoT with EGPRS fallback (BG95-M3), so +CGREG is read when +CEREG shows no service.
# Context 1 is set with AT+QICSGP and activated with AT+QIACT=1 (up to 150 s). Sockets are
# AT+QIOPEN (result "+QIOPEN: <id>,<err>" after OK), AT+QISEND (">", data, SEND OK), AT+QIRD
# in buffer access mode and AT+QICLOSE, with "+QIURC: "recv"/"closed"/"pdpdeact"" URCs.
# +QIOPEN <err>: 552 invalid parameters, 553 memory not enough, 554 create socket failed, 555
# not supported, 556 bind failed, 561 open PDP context failed, 563 socket identity used, 564
# DNS busy, 565 DNS parse failed, 566 connect failed, 567 socket closed, 568 busy, 569
# timeout, 570 PDP context broken down, 573 APN not configured.
from app.modem.at import ATTimeout
from app.modem.base import Modem, ModemError, band, find, lte_act, num, val


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

    def __init__(self, channel, board, log):
        super().__init__(channel, board, log)
        self._send_failed = False
        channel.on_urc("+QIURC:", self._on_qiurc)
        channel.on_urc("SEND FAIL", self._on_send_fail)

    def _on_qiurc(self, line):
        f = find((line,), "+QIURC:")
        kind = val(f[0])
        if kind == "pdpdeact":
            self.log.warning("modem", "bearer lost: " + line)
            self._forget()
        elif kind in ("recv", "closed") and len(f) > 1:
            self._link_event(f[1], kind == "recv")

    def _on_send_fail(self, line):
        self._send_failed = True

    async def _lte_report(self):
        out = parse_qnwinfo(await self._at("AT+QNWINFO") or ())
        out.update(parse_qcsq(await self._at("AT+QCSQ") or ()))
        return out

    async def _config_pdp(self, apn):
        await self._at('AT+QICSGP=1,1,"%s","","",0' % apn, "pdp config")

    async def _activate(self):
        # +QIACT: <contextID>,<state>,<type>,<address>, one line per active context.
        for line in await self._at("AT+QIACT?", "bearer read"):
            if line.startswith("+QIACT: 1,1"):
                return
        await self._at("AT+QIACT=1", "bearer", self.ATTACH_TIMEOUT_MS)

    async def _deactivate(self):
        await self._at("AT+QIDEACT=1", "bearer off", self.DETACH_TIMEOUT_MS)

    async def _open(self, sock, host, port, timeout_ms):
        what = "open %s:%d" % (host, port)
        f = await self._reply('AT+QIOPEN=1,%d,"TCP","%s",%d,0,0' % (sock.link, host, port),
                              "+QIOPEN: %d," % sock.link, what, timeout_ms)
        if num(f[0]) != 0:
            raise ModemError("%s: +QIOPEN error %s" % (what, f[0]), num(f[0]))

    async def _send(self, sock, chunk):
        # SEND OK: taken into the modem's buffer; SEND FAIL: that buffer is full. The AT
        # channel takes SEND FAIL for no final result, so the command times out and the URC
        # handler has noted why.
        self._send_failed = False
        try:
            await self._at("AT+QISEND=%d,%d" % (sock.link, len(chunk)), "send",
                           self.SEND_TIMEOUT_MS, payload=chunk, finals=("SEND OK",))
        except ATTimeout:
            if self._send_failed:
                raise ModemError("send: SEND FAIL (modem buffer full)")
            raise


Driver = BG95
