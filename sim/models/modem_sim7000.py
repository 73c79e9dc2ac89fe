"""SIMCom's SIM7000 series for the modem model (modem.py), scenario family "sim7000".

The SIM7000E/G (firmware with the TCP/IP application toolkit, "SIM7000 Series AT Command
Manual" V1.04) speaks the SIM7080's dialect, sockets included (AT+CAOPEN/CASEND/CARECV/
CACLOSE, +CADATAIND, +CASTATE), but its bearer commands in an older form, without a PDP index:
  AT+CNACT?               +CNACT: <status>,"<address>"   one line
  AT+CNACT=<mode>[,<apn>] mode 1 activates (with this APN, else the one AT+CNCFG set), 2
                          auto-activates, 0 deactivates; the result follows OK as
                          "+APP PDP: ACTIVE" or "+APP PDP: DEACTIVE"
  AT+CNCFG=<ip_type>,<apn>[,<user>,<password>[,<auth>]]
The network ending the bearer gives "+APP PDP: DEACTIVE".
"""
from musket_sim.models.modem import _DEFER, _L_OPEN, _US_PER_MS, Sim7080, _arg, _arg_int, _CmdError


class Sim7000(Sim7080):
    FAMILY = "sim7000"
    MODEL = "SIMCOM_SIM7000G"
    REVISION = "Revision:1351B04SIM7000G"
    IMEI_TAC = "86920003"

    def _apn(self):
        cfg = self.nv.get("cncfg")
        return cfg if cfg is not None else self.contexts.get(1, "")

    def _at_cncfg(self, kind, a):
        if kind == "?":
            return ['+CNCFG: 1,"%s","",""' % (self.nv.get("cncfg") or "")]
        if kind != "=":
            raise _CmdError(None)
        _arg_int(a, 0, None, 0, 2)
        self.nv["cncfg"] = _arg(a, 1, "")
        return []

    def _at_cnact(self, kind, a):
        if kind == "?":
            up = self.pdp_ip is not None
            return ['+CNACT: %d,"%s"' % (1 if up else 0, self.pdp_ip if up else "0.0.0.0")]
        if kind != "=":
            raise _CmdError(None)
        mode = _arg_int(a, 0, None, 0, 2)
        if mode == 0:
            if self.pdp_ip is None:
                raise _CmdError(3)
            self._drop_links()
            self.pdp_ip = None
            self._reply((), "OK")
            self._urc("+APP PDP: DEACTIVE", self._delay() + 200 * _US_PER_MS)
            return _DEFER
        if self.pdp_ip is not None:
            raise _CmdError(3)
        apn = _arg(a, 1, "") if len(a) > 1 else self._apn()
        self._reply((), "OK")
        gen = self.gen

        def attach():
            if gen != self.gen:
                return
            if self._pdp_allowed(apn) and self.pdp_ip is None:
                self._pdp_up(1)
                self._urc("+APP PDP: ACTIVE")
            else:
                self._urc("+APP PDP: DEACTIVE")
        self.world.at(self.world.now_us + self._delay() + self.PDP_MS * _US_PER_MS, attach)
        return _DEFER

    def _urcs_data_lost(self):
        for lid in sorted(self.links):
            if self.links[lid].state == _L_OPEN:
                self._urc("+CASTATE: %d,0" % lid)
        if self.pdp_ip is not None:
            self._urc("+APP PDP: DEACTIVE")
