"""Quectel BG95/BG96 (LTE-M / NB-IoT), "BG95&BG77 AT Commands Manual" and "TCP/IP Application
Note": QICSGP/QIACT for the bearer, QIOPEN/QISEND/QIRD/QICLOSE for sockets in buffer access
mode (access mode 1, direct push, too).
"""
from musket_sim.models.modem.base import Modem
from musket_sim.models.modem.common import DEFER, L_OPEN, CmdError, arg, arg_int
from musket_sim.models.modem.sockets import Dialect
from musket_sim.models.world import US_PER_MS


class Bg95(Modem):
    FAMILY = "bg95"
    BOOT_S = 3.0
    POWER_OFF_S = 1.5
    CMEE_DEFAULT = 1
    BOOT_URCS = ((0, "RDY"), (200, "+CFUN: 1"), (300, "+CPIN: READY"), (400, "+QUSIM: 1"),
                 (600, "+QIND: SMS DONE"), (1000, "APP RDY"))
    NO_SIM_URCS = ((0, "RDY"), (200, "+CFUN: 1"), (300, "+CPIN: NOT INSERTED"),
                   (1000, "APP RDY"))
    POWER_DOWN_URC = "POWERED DOWN"
    MANUFACTURER = "Quectel"
    MODEL = "BG95-M3"
    REVISION = "BG95M3LAR02A03"
    IMEI_TAC = "86695004"
    LINK_COUNT = 12
    MAX_SEND = 1460
    MAX_READ = 1500
    PDP_MS = 1500
    # +QIOPEN <err>: 0 ok, 561 open PDP context failed, 563 socket identity has been used,
    # 565 DNS parse failed, 566 socket connect failed
    CODES = {"ok": 0, "dns": 565, "refused": 566, "policy": 566}
    SOCKETS = Dialect(
        send="qisend", close="qiclose", open_result="+QIOPEN: %d,%d", open_urc=True,
        data_urc='+QIURC: "recv",%d', closed_urc='+QIURC: "closed",%d',
        sent="SEND OK", send_failed="SEND FAIL", sent_query="+QISEND: %d,%d,0",
        close_absent_ok=True, push_head=b'\r\n+QIURC: "recv",%d,%d\r\n',
        read_head="\r\n+QIRD: %(n)d\r\n", read_empty="+QIRD: 0")

    def _at_qccid(self, kind, a):
        self._need_sim()
        iccid = self.iccid + ("F" if len(self.iccid) == 19 else "")
        return ["+QCCID: " + iccid]

    def _sysmode(self):
        return "NBIoT" if self.rat == "nb-iot" else "eMTC"

    def _at_qcsq(self, kind, a):
        if not self._registered():
            return ['+QCSQ: "NOSERVICE"']
        return ['+QCSQ: "%s",%d,%d,%d,%d' % (self._sysmode(), -113 + 2 * self.rssi, self.rsrp,
                                              (self.sinr + 20) * 5, self.rsrq)]

    def _at_qnwinfo(self, kind, a):
        if not self._registered():
            return ["+QNWINFO: No Service"]
        return ['+QNWINFO: "%s","%s","LTE BAND 20",6300' % (self._sysmode(), self.plmn)]

    def _at_qicsgp(self, kind, a):
        if kind != "=":
            raise CmdError(None)
        ctx = arg_int(a, 0, None, 1, 15)
        if len(a) == 1:
            return ['+QICSGP: 1,"%s","","",0' % self.contexts.get(ctx, "")]
        arg_int(a, 1, 1, 1, 3)
        self.contexts[ctx] = arg(a, 2, "")
        return []

    def _at_qiact(self, kind, a):
        if kind == "?":
            if self.pdp_ip is None:
                return []
            return ['+QIACT: %d,1,1,"%s"' % (self.pdp_cid, self.pdp_ip)]
        if kind != "=":
            raise CmdError(None)
        ctx = arg_int(a, 0, None, 1, 15)
        if self.pdp_ip is not None:
            raise CmdError(None)

        def attach():
            if self.pdp_ip is None and self._pdp_allowed(self.contexts.get(ctx, "")):
                self._pdp_up(ctx)
                self._reply((), "OK", 0)
            else:
                self._reply((), "ERROR", 0)
        self._later(self._delay() + self.PDP_MS * US_PER_MS, attach)
        return DEFER

    def _at_qideact(self, kind, a):
        if kind != "=":
            raise CmdError(None)
        arg_int(a, 0, None, 1, 15)
        self._drop_links()
        self.pdp_ip = None
        return []

    def _at_qiopen(self, kind, a):
        if kind != "=":
            raise CmdError(None)
        arg_int(a, 0, None, 1, 15)
        lid = self._link_arg(a, 1)
        proto = arg(a, 2).upper()
        host = arg(a, 3)
        port = arg_int(a, 4, None, 0, 65535)
        arg_int(a, 5, 0, 0, 65535)
        mode = arg_int(a, 6, 0, 0, 2)
        if mode == 2 or proto != "TCP":
            raise CmdError(None)  # transparent mode and UDP are not modelled
        code = 563 if lid in self.links else (561 if self.pdp_ip is None else None)
        return self._open_socket(lid, host, port, code, lambda: mode == 1 or self.push_all)

    def _at_qird(self, kind, a):
        if kind != "=":
            raise CmdError(None)
        link = self._link(self._link_arg(a))
        n = arg_int(a, 1, self.MAX_READ, 0, self.MAX_READ)
        if n == 0:
            return ["+QIRD: %d,%d,%d" % (link.received, link.read, link.rx_len)]
        return self._read_reply(link, n)

    def _at_qistate(self, kind, a):
        lids = sorted(self.links)
        if kind == "=":
            lids = [i for i in lids if i == arg_int(a, 1)]
        out = []
        for lid in lids:
            link = self.links[lid]
            out.append('+QISTATE: %d,"TCP","%s",%d,0,%d,%d,0,%d,"uart1"' % (
                lid, link.host, link.port, 2 if link.state == L_OPEN else 4, self.pdp_cid,
                1 if link.push else 0))
        return out

    def _at_qpowd(self, kind, a):
        normal = not (kind == "=" and arg_int(a, 0, 1, 0, 1) == 0)
        if normal:
            self._reply((), "OK")
        self._power_down(True, self._delay())
        return DEFER

    def _urcs_data_lost(self):
        if self.pdp_ip is not None:
            self._urc('+QIURC: "pdpdeact",%d' % self.pdp_cid)
