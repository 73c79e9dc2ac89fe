# SIMCom SIM7080G (SIM7070/SIM7090 alike), from the SIM7070_SIM7080_SIM7090 Series AT Command
# Manual. LTE-M/NB-IoT only, so +CEREG alone tells registration. The app network is PDP index
# 0, set with AT+CNCFG and switched with AT+CNACT (result: the URC "+APP PDP: 0,ACTIVE");
# sockets are AT+CAOPEN/CASEND/CARECV/CACLOSE, data announced by "+CADATAIND: <cid>" and read
# from the modem's buffer, closure by "+CASTATE: <cid>,0". +CAOPEN result codes: 1 socket
# error, 2 no memory, 3 connection limit, 4 invalid parameter, 6 invalid IP address, 7 not
# supported, 12 cannot bind port, 20 cannot resolve host, 21 network not active, 23 remote
# refused, 27 connect failed.
# SIM7000-series modules (SIM7000E/G with the CA* socket commands) answer the bearer commands
# in older forms: AT+CNACT? as one "+CNACT: <status>,"<ip>"" (no index), activation as
# AT+CNACT=1,"<apn>" (off: AT+CNACT=0) with the result "+APP PDP: ACTIVE" (no index). The
# driver tells them apart by the AT+CNACT? reply and speaks the older form to such a modem.
from app.modem.base import Modem
from app.modem.replies import ModemError, find, num, parse_cpsi, result, val

_PDP = "+APP PDP:"


def parse_cnact(lines):
    # AT+CNACT? -> (up, address, older form) for PDP index 0: "+CNACT: <pdpidx>,<status>,
    # <address>" a line per index, or the SIM7000's one "+CNACT: <status>,<address>".
    old = False
    for line in lines:
        f = find((line,), "+CNACT:")
        if f is None:
            continue
        if len(f) == 2:
            old = True
        elif len(f) != 3 or num(f[0]) != 0:
            continue
        if num(f[-2]) == 1:
            return True, val(f[-1]), old
    return False, None, old


class SIM7080(Modem):
    FAMILY = "sim7080"
    # <AcT> 7 is LTE-M here (the manual: "User-specified LTE M1 A GB"), 9 NB-IoT.
    ACT_NAMES = "GSM GSM UMTS EDGE HSPA HSPA HSPA LTE-M EC-GSM-IoT NB-IoT"
    REPLY_URCS = (_PDP,)
    BOOT_URCS = ("RDY", "SMS Ready")
    CPSI = (1, 1, 0)  # +CPSI units: RSRQ in dB, RSRP in dBm, RSSNR in dB (parse_cpsi)
    # ICCID_CMD: the base's AT+CCID, a bare ICCID. MAX_SEND and MAX_READ: the base's 1460,
    # AT+CASEND <datalen> and AT+CARECV <readlen> 1..1460.
    # "+CARECV: <recvlen>,<data>" then OK; "+CARECV: 0" when the buffer is empty.
    READ_COMMAND = "AT+CARECV=%d,%d"
    READ_DATA = ("+CARECV:", b",", 0)
    CLOSE_COMMAND = "AT+CACLOSE=%d"

    def __init__(self, channel, board, log):
        super().__init__(channel, board, log)
        self._sim7000 = False  # the modem answered AT+CNACT? in the SIM7000's form
        channel.on_urc("+CADATAIND:", self._on_data)
        channel.on_urc("+CASTATE:", self._on_state)

    def _on_reply(self, line):
        # "+APP PDP: [0,]DEACTIVE" nobody waits for: the network dropped the bearer.
        if self._awaiting != _PDP and "DEACTIVE" in line:
            self._forget("bearer lost: " + line)
        else:
            super()._on_reply(line)

    def _on_data(self, line):
        self._link_event(line[11:], True)

    def _on_state(self, line):
        f = find((line,), "+CASTATE:")
        if len(f) == 2 and num(f[1]) == 0:
            self._link_event(f[0], False)

    async def _lte_report(self):
        return parse_cpsi(await self._at("AT+CPSI?") or (), *self.CPSI)

    async def _config_pdp(self, apn):
        await self._at('AT+CNCFG=0,1,"%s"' % apn, "pdp config")

    async def _bearer(self):
        # Whether PDP index 0 is up; its address into status.
        up, ip, old = parse_cnact(await self._at("AT+CNACT?", "bearer read"))
        self._sim7000 = self._sim7000 or old
        self.status["ip"] = ip
        return up

    async def _activate(self):
        if await self._bearer():
            return
        cmd = 'AT+CNACT=1,"%s"' % self._apn if self._sim7000 else "AT+CNACT=0,1"
        f = await self._reply(cmd, _PDP, "bearer", self.ATTACH_TIMEOUT_MS)
        if f[-1] != "ACTIVE":
            raise ModemError("bearer: %s %s" % (_PDP, ",".join(f)))
        await self._bearer()

    async def _deactivate(self):
        await self._reply("AT+CNACT=0" if self._sim7000 else "AT+CNACT=0,0", _PDP,
                          "bearer off", self.DETACH_TIMEOUT_MS)

    async def _open(self, sock, host, port, timeout_ms):
        # +CAOPEN: <cid>,<result> before OK
        what = "open %s:%d" % (host, port)
        lines = await self._at('AT+CAOPEN=%d,0,"TCP","%s",%d' % (sock.link, host, port), what,
                               timeout_ms)
        code = result(lines, "+CAOPEN: %d," % sock.link)
        if code != 0:
            raise ModemError("%s: +CAOPEN result %s in %r" % (what, code, lines), code)

    async def send(self, sock, chunk):
        # An error instead of the ">" prompt (a link the modem no longer has) ends it at once.
        await self._at("AT+CASEND=%d,%d" % (sock.link, len(chunk)), "send", self.SEND_TIMEOUT_MS,
                       payload=chunk)


Driver = SIM7080
