"""SIMCom's SIM7080G and its older sibling SIM7000: one socket dialect (CA* commands), two forms
of the bearer commands.

SIM7080G (LTE-M / NB-IoT), "SIM7080 Series AT Command Manual" and its TCP/IP application note:
CNCFG/CNACT with a PDP index for the data bearer, CA* commands for sockets.

SIM7000E/G (firmware with the TCP/IP application toolkit, "SIM7000 Series AT Command Manual"
V1.04) speaks the SIM7080's dialect, sockets included (AT+CAOPEN/CASEND/CARECV/CACLOSE,
+CADATAIND, +CASTATE), but its bearer commands in an older form, without a PDP index:
  AT+CNACT?               +CNACT: <status>,"<address>"   one line
  AT+CNACT=<mode>[,<apn>] mode 1 activates (with this APN, else the one AT+CNCFG set), 2
                          auto-activates, 0 deactivates; the result follows OK as
                          "+APP PDP: ACTIVE" or "+APP PDP: DEACTIVE"
  AT+CNCFG=<ip_type>,<apn>[,<user>,<password>[,<auth>]]
The network ending the bearer gives "+APP PDP: DEACTIVE".
"""
from musket_sim.models.modem.base import Modem
from musket_sim.models.modem.common import DEFER, L_OPEN, CmdError, arg, arg_int
from musket_sim.models.modem.sockets import Dialect
from musket_sim.models.world import US_PER_MS


class Sim7080(Modem):
    FAMILY = "sim7080"
    BOOT_S = 4.0
    POWER_OFF_S = 2.0
    CMEE_DEFAULT = 0
    BOOT_URCS = ((0, "RDY"), (150, "+CFUN: 1"), (300, "+CPIN: READY"), (1500, "SMS Ready"))
    NO_SIM_URCS = ((0, "RDY"), (150, "+CFUN: 1"), (300, "+CPIN: NOT INSERTED"))
    POWER_DOWN_URC = "NORMAL POWER DOWN"
    MANUFACTURER = "SIMCOM INCORPORATED"
    MODEL = "SIMCOM_SIM7080G"
    REVISION = "Revision:1951B16SIM7080"
    IMEI_TAC = "86971505"
    LINK_COUNT = 13
    MAX_SEND = 1460
    MAX_READ = 1460
    PDP_MS = 1000
    # CAOPEN <result>: 0 success, 20 can't resolve the host, 23 remote refuse, 27 connect
    # failed, 21 network not active, 7 not supported
    CODES = {"ok": 0, "dns": 20, "refused": 23, "policy": 27}
    SOCKETS = Dialect(
        send="casend", close="caclose", open_result="+CAOPEN: %d,%d",
        data_urc="+CADATAIND: %d", closed_urc="+CASTATE: %d,0", no_link=3,
        read_head="\r\n+CARECV: %(n)d,", read_empty="+CARECV: 0")
    PDP_URC = "+APP PDP: 0,%s"  # the bearer's state, ACTIVE or DEACTIVE, after AT+CNACT
    APN_NV = "cncfg0"  # the NV entry of the APN AT+CNCFG set for AT+CNACT

    def _at_ccid(self, kind, a):
        self._need_sim()
        return [self.iccid]

    def _at_cpsi(self, kind, a):
        if kind != "?":
            raise CmdError(None)
        if not self._registered():
            return ["+CPSI: NO SERVICE,Online"]
        mode = "LTE NB-IOT" if self.rat == "nb-iot" else "LTE CAT-M1"
        return ["+CPSI: %s,Online,%s-%s,0x%s,%d,123,EUTRAN-BAND20,6300,5,5,%d,%d,%d,%d" % (
            mode, self.plmn[:3], self.plmn[3:], self.tac, self.cell, self.rsrq, self.rsrp,
            -113 + 2 * self.rssi, self.sinr)]

    def _apn(self):
        cfg = self.nv.get(self.APN_NV)
        return cfg if cfg is not None else self.contexts.get(1, "")

    def _at_cncfg(self, kind, a):
        if kind == "?":
            out = []
            for i in range(4):
                apn = self.nv.get("cncfg%d" % i) or ""
                out.append('+CNCFG: %d,1,"%s","","",0' % (i, apn))
            return out
        if kind != "=":
            raise CmdError(None)
        idx = arg_int(a, 0, None, 0, 3)
        arg_int(a, 1, 1, 0, 2)
        self.nv["cncfg%d" % idx] = arg(a, 2, "")
        return []

    def _at_cnact(self, kind, a):
        if kind == "?":
            out = []
            for i in range(4):
                up = self.pdp_ip is not None and i == 0
                out.append('+CNACT: %d,%d,"%s"' % (i, 1 if up else 0,
                                                   self.pdp_ip if up else "0.0.0.0"))
            return out
        if kind != "=":
            raise CmdError(None)
        idx = arg_int(a, 0, None, 0, 3)
        action = arg_int(a, 1, None, 0, 2)
        if idx != 0:
            raise CmdError(4)
        return self._bearer(action, None)

    def _bearer(self, action, apn):
        # AT+CNACT: action 0 ends the bearer, 1 or 2 starts it with apn (None: the one AT+CNCFG
        # set, when the attach is done); OK at once, the bearer's state as a URC.
        if action == 0:
            if self.pdp_ip is None:
                raise CmdError(3)
            self._drop_links()
            self.pdp_ip = None
            self._reply((), "OK")
            self._urc(self.PDP_URC % "DEACTIVE", self._delay() + 200 * US_PER_MS)
            return DEFER
        if self.pdp_ip is not None:
            raise CmdError(3)
        self._reply((), "OK")

        def attach():
            if self._pdp_allowed(self._apn() if apn is None else apn) and self.pdp_ip is None:
                self._pdp_up(1)
                self._urc(self.PDP_URC % "ACTIVE")
            else:
                self._urc(self.PDP_URC % "DEACTIVE")
        self._later(self._delay() + self.PDP_MS * US_PER_MS, attach)
        return DEFER

    def _at_cacid(self, kind, a):
        if kind != "=":
            raise CmdError(None)
        self._link_arg(a)
        return []

    def _at_caopen(self, kind, a):
        if kind != "=":
            raise CmdError(None)
        cid = self._link_arg(a)
        arg_int(a, 1, None, 0, 3)
        proto = arg(a, 2).upper()
        host = arg(a, 3)
        port = arg_int(a, 4, None, 1, 65535)
        if cid in self.links:
            raise CmdError(3)
        if arg_int(a, 5, 0, 0, 1) != 0 or proto != "TCP":
            code = 7
        elif self.pdp_ip is None:
            code = 21
        else:
            code = None
        return self._open_socket(cid, host, port, code)

    def _at_carecv(self, kind, a):
        if kind != "=":
            raise CmdError(None)
        cid = self._link_arg(a)
        n = arg_int(a, 1, None, 1, self.MAX_READ)
        return self._read_reply(self._link(cid), n)

    def _at_castate(self, kind, a):
        if kind != "?":
            raise CmdError(None)
        return ["+CASTATE: %d,%d" % (lid, 1 if self.links[lid].state == L_OPEN else 0)
                for lid in sorted(self.links)]

    def _at_cpowd(self, kind, a):
        urgent = kind == "=" and arg_int(a, 0, 1, 0, 1) == 0
        self._power_down(not urgent, self._delay())
        return DEFER

    def _urcs_data_lost(self):
        for lid in sorted(self.links):
            if self.links[lid].state == L_OPEN:
                self._urc_closed(self.links[lid])
        if self.pdp_ip is not None:
            self._urc(self.PDP_URC % "DEACTIVE")


class Sim7000(Sim7080):
    FAMILY = "sim7000"
    MODEL = "SIMCOM_SIM7000G"
    REVISION = "Revision:1351B04SIM7000G"
    IMEI_TAC = "86920003"
    PDP_URC = "+APP PDP: %s"
    APN_NV = "cncfg"

    def _at_cncfg(self, kind, a):
        if kind == "?":
            return ['+CNCFG: 1,"%s","",""' % (self.nv.get(self.APN_NV) or "")]
        if kind != "=":
            raise CmdError(None)
        arg_int(a, 0, None, 0, 2)
        self.nv[self.APN_NV] = arg(a, 1, "")
        return []

    def _at_cnact(self, kind, a):
        if kind == "?":
            up = self.pdp_ip is not None
            return ['+CNACT: %d,"%s"' % (1 if up else 0, self.pdp_ip if up else "0.0.0.0")]
        if kind != "=":
            raise CmdError(None)
        mode = arg_int(a, 0, None, 0, 2)
        return self._bearer(mode, arg(a, 1, "") if len(a) > 1 else self._apn())
