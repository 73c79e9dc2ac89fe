"""SIMCom SIM7600 / A7670 (LTE Cat-1), "SIM7500_SIM7600 Series TCPIP AT Command Manual":
NETOPEN for the bearer, CIPOPEN/CIPSEND/CIPRXGET/CIPCLOSE for sockets.
"""
from musket_sim.models.modem.base import Modem
from musket_sim.models.modem.common import DEFER, CmdError, arg, arg_int
from musket_sim.models.modem.sockets import Dialect
from musket_sim.models.world import US_PER_MS


class Sim7600(Modem):
    FAMILY = "sim7600"
    BOOT_S = 12.0
    POWER_OFF_S = 3.0
    DEFAULT_RAT = "lte"
    CMEE_DEFAULT = 0
    BOOT_URCS = ((0, "RDY"), (1000, "+CPIN: READY"), (3000, "SMS DONE"), (3500, "PB DONE"))
    NO_SIM_URCS = ((0, "RDY"), (1000, "+CPIN: SIM REMOVED"))
    POWER_DOWN_URC = None
    MANUFACTURER = "SIMCOM INCORPORATED"
    MODEL = "A7670E-LASE"
    REVISION = "+CGMR: A011B07A7670M7_F"
    IMEI_TAC = "86259005"
    LINK_COUNT = 10
    MAX_SEND = 1500
    MAX_READ = 1500
    PDP_MS = 1500
    # +CIPOPEN <err>: 0 ok, 1 network failure, 2 network not opened, 4 operation not
    # supported, 10 timeout, 11 DNS parse failed
    CODES = {"ok": 0, "dns": 11, "refused": 1, "policy": 10}
    SOCKETS = Dialect(
        send="cipsend", close="cipclose", open_result="+CIPOPEN: %d,%d", open_urc=True,
        data_urc="+CIPRXGET: 1,%d", closed_urc="+IPCLOSE: %d,1",
        sent_urc="+CIPSEND: %d,%d,%d", send_refused="+CIPERROR: 4",
        close_urc="+CIPCLOSE: %d,0", push_head=b"\r\n+RECEIVE,%d,%d\r\n",
        read_head="\r\n+CIPRXGET: 2,%(id)d,%(n)d,%(left)d\r\n",
        read_empty="+CIPRXGET: 2,%(id)d,0,%(left)d")

    def _family_reset(self):
        self.netopen = False
        self.rx_mode = 0
        self.socket_cid = 1

    def _at_ciccid(self, kind, a):
        self._need_sim()
        return ["+ICCID: " + self.iccid]

    def _at_cpsi(self, kind, a):
        if kind != "?":
            raise CmdError(None)
        if not self._registered():
            return ["+CPSI: NO SERVICE,Online"]
        # The SIM7600 series reports RSRQ, RSRP and RSSI in tenths of a dB, and RSSNR as
        # (SINR + 20) / 2.
        return ["+CPSI: LTE,Online,%s-%s,0x%s,%d,123,EUTRAN-BAND3,1300,5,5,%d,%d,%d,%d" % (
            self.plmn[:3], self.plmn[3:], self.tac, self.cell, self.rsrq * 10, self.rsrp * 10,
            (-113 + 2 * self.rssi) * 10, (self.sinr + 20) // 2)]

    def _at_csocksetpn(self, kind, a):
        # The PDP context sockets use (SIM7600 TCP/IP application note).
        if kind == "?":
            return ["+CSOCKSETPN: %d" % self.socket_cid]
        if kind == "=":
            self.socket_cid = arg_int(a, 0, None, 1, 16)
        return []

    def _not_open(self):
        # The answer to a bearer command while the network is not open.
        self._reply(["+IP ERROR: Network not opened"], "ERROR")
        return DEFER

    def _at_netopen(self, kind, a):
        if kind == "?":
            return ["+NETOPEN: %d" % (1 if self.netopen else 0)]
        if kind != "":
            raise CmdError(None)
        if self.netopen:
            self._reply(["+IP ERROR: Network is already opened"], "ERROR")
            return DEFER
        self._reply((), "OK")

        def attach():
            if self._pdp_allowed(self.contexts.get(1, "")):
                self._pdp_up(1)
                self.netopen = True
                self._urc("+NETOPEN: 0")
            else:
                self._urc("+NETOPEN: 1")
        self._later(self._delay() + self.PDP_MS * US_PER_MS, attach)
        return DEFER

    def _at_netclose(self, kind, a):
        if not self.netopen:
            return self._not_open()
        self._drop_links()
        self.netopen = False
        self.pdp_ip = None
        self._reply((), "OK")
        self._urc("+NETCLOSE: 0", self._delay() + 300 * US_PER_MS)
        return DEFER

    def _at_ipaddr(self, kind, a):
        if not self.netopen:
            return self._not_open()
        return ["+IPADDR: " + self.pdp_ip]

    def _at_ciprxget(self, kind, a):
        if kind == "?":
            return ["+CIPRXGET: %d" % self.rx_mode]
        if kind != "=":
            raise CmdError(None)
        mode = arg_int(a, 0, None, 0, 4)
        if mode in (0, 1):
            self.rx_mode = mode
            return []
        if mode == 3:
            raise CmdError(4)  # hex reads are not modelled
        link = self._link(self._link_arg(a, 1))
        if mode == 4:
            return ["+CIPRXGET: 4,%d,%d" % (link.id, link.rx_len)]
        return self._read_reply(link, arg_int(a, 2, self.MAX_READ, 1, self.MAX_READ))

    def _at_cipopen(self, kind, a):
        if kind == "?":
            out = []
            for lid in range(self.LINK_COUNT):
                link = self.links.get(lid)
                if link is None:
                    out.append("+CIPOPEN: %d" % lid)
                else:
                    out.append('+CIPOPEN: %d,"TCP","%s",%d,-1' % (lid, link.host, link.port))
            return out
        if kind != "=":
            raise CmdError(None)
        lid = self._link_arg(a)
        proto = arg(a, 1).upper()
        host = arg(a, 2)
        port = arg_int(a, 3, None, 1, 65535)
        if lid in self.links:
            raise CmdError(None)
        code = 4 if proto != "TCP" else (2 if not self.netopen else None)
        return self._open_socket(lid, host, port, code, lambda: self.rx_mode == 0)

    def _at_creset(self, kind, a):
        return self._restart()

    def _at_cpof(self, kind, a):
        self._reply((), "OK")
        self._power_down(False)
        return DEFER

    def _urcs_data_lost(self):
        if self.netopen:
            self._urc("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")
        self.netopen = False
