"""The radio and the network as the modem sees them: registration (CREG/CGREG/CEREG), the
operator, signal and failure reports, the PDP context, and the scenario's timed events
(coverage, deny, sms_only, hang, drop_data, ...; the fields are listed in the package's
docstring, musket_sim.models.modem).
"""
import binascii
import os
import time

from musket_sim import carrier
from musket_sim.models.modem.common import BOOTING, OFF, ON, CmdError, arg, arg_int
from musket_sim.models.world import US_PER_MS, US_PER_S

_DATA_LOSS_S = 8  # coverage gone this long: PDP context and sockets are lost

# ESM cause 33 (3GPP TS 24.301 annex B) as AT+CEER words it: what a modem reports when the
# carrier has stopped the SIM's data (a data-limit pause, a paused SIM).
DATA_STOPPED_CEER = "Requested service option not subscribed"

# EMM causes (3GPP TS 24.301 annex A) as AT+CEER words them
_EMM_CAUSES = {
    3: "Illegal UE", 7: "EPS services not allowed", 11: "PLMN not allowed",
    12: "Tracking area not allowed", 13: "Roaming not allowed in this tracking area",
    15: "No suitable cells in tracking area",
}


class Network:
    # Registration, PDP and the scenario's events (a part of Modem).

    # -- scenario events -------------------------------------------------------------------

    def _schedule_events(self):
        events = self.events
        now = self.world.now_us
        for i in range(len(events)):
            ev = events[i]
            due = int(ev["at"] * US_PER_S)
            if due <= now:
                # Before the models started: the world is as the event left it.
                self._world(ev, False)
            else:
                self.world.at(due, self._event_cb(i, ev))

    def _event_cb(self, i, ev):
        def fire():
            self._world(ev, True)
            self._modem_event(ev)
        return fire

    def _world(self, ev, live):
        if "coverage" in ev:
            self.w_coverage = bool(ev["coverage"])
        if "deny" in ev:
            self.w_deny = bool(ev["deny"])
        if "reject_cause" in ev:
            self.w_cause = ev["reject_cause"]
        if "sms_only" in ev:
            self.w_sms_only = bool(ev["sms_only"])
        if "slow_ms" in ev:
            self.slow_us = int(ev["slow_ms"] * US_PER_MS)
        if "sim_swap" in ev:
            self.slot_iccid = ev["sim_swap"]
        if "data_stop" in ev:
            self.w_data_stop = bool(ev["data_stop"])
        if live and ("coverage" in ev or "deny" in ev or "sms_only" in ev):
            self._reg_update()

    def _modem_event(self, ev):
        if ev.get("hang") and self.state in (BOOTING, ON):
            self.hung = True
            self._new_life()
            self.data_need = 0
        if (ev.get("drop_data") or ev.get("data_stop")) and self.state == ON:
            self._lose_data()
        if ev.get("close_after_open"):
            self.w_close_next = True  # once: not again when a later boot replays the world
        if ev.get("drop_sockets") and self.state == ON:
            self._drop_links()
        if ev.get("modem_reset") and self.state == ON and not self.hung:
            self._reboot()
        text = ev.get("garbage")
        if text and self.state != OFF:
            if text.startswith("hex:"):
                data = binascii.unhexlify(text[4:])
            else:
                data = text.encode()
            self._emit(data, 0, True)
        n = ev.get("garbage_bytes")
        if n and self.state != OFF:
            self._emit(self.rng.bytes(n), 0, True)

    # -- 27.007 registration, signal and PDP commands -------------------------------------

    def _signal(self):
        return self.state == ON and self.cfun == 1 and self.sim_present and self.w_coverage

    def _at_csq(self, kind, a):
        if self._signal():
            return ["+CSQ: %d,99" % self.rssi]
        return ["+CSQ: 99,99"]

    def _reg_line(self, name, urc):
        n = self.reg_n[name]
        s = name + ": "
        if not urc:
            s += "%d," % n
        s += "%d" % self.stat
        if n >= 2 and self.stat in (1, 5, 6, 7):
            s += ',"%s","%07X",%d' % (self.tac, self.cell, self.act)
        elif n >= 3 and self.stat == 3:  # 27.007: <cause_type> 0, an EMM <reject_cause>
            s += ',"%s","%07X",%d,0,%d' % (self.tac, self.cell, self.act, self.w_cause)
        return s

    def _reg_command(self, name, kind, a):
        if kind == "?":
            return [self._reg_line(name, False)]
        if kind != "=":
            raise CmdError(None)
        self.reg_n[name] = arg_int(a, 0, 0, 0, 5 if name == "+CEREG" else 2)
        return []

    def _at_creg(self, kind, a):
        return self._reg_command("+CREG", kind, a)

    def _at_cgreg(self, kind, a):
        return self._reg_command("+CGREG", kind, a)

    def _at_cereg(self, kind, a):
        return self._reg_command("+CEREG", kind, a)

    def _registered(self):
        return self.stat in (1, 5, 6, 7)

    def _at_cops(self, kind, a):
        if kind == "?":
            if self._registered():
                return ['+COPS: 0,0,"%s",%d' % (self.operator, self.act)]
            return ["+COPS: 0"]
        if kind == "=":
            return []
        raise CmdError(None)

    def _at_ceer(self, kind, a):
        # The modem's report on the last failure, in words.
        if self.stat == 3:
            why = _EMM_CAUSES.get(self.w_cause, "EMM cause %d" % self.w_cause)
        elif self.w_data_stop and self._registered():
            why = DATA_STOPPED_CEER
        elif self.stat in (6, 7):
            why = "EPS services not allowed"
        else:
            why = "No cause information available"
        return ["+CEER: " + why]

    def _at_cgatt(self, kind, a):
        if kind == "?":
            return ["+CGATT: %d" % (1 if self.stat in (1, 5) else 0)]
        raise CmdError(3)

    def _at_cfun(self, kind, a):
        if kind == "?":
            return ["+CFUN: %d" % self.cfun]
        if kind != "=":
            raise CmdError(None)
        fun = arg_int(a, 0)
        if fun not in (0, 1, 4):
            raise CmdError(50)
        if arg_int(a, 1, 0, 0, 1) == 1:
            return self._restart()
        self.cfun = fun
        self._reg_update()
        return []

    def _at_cgdcont(self, kind, a):
        if kind == "?":
            return ['+CGDCONT: %d,"IP","%s","0.0.0.0",0,0,0,0' % (cid, self.contexts[cid])
                    for cid in sorted(self.contexts)]
        if kind != "=":
            raise CmdError(None)
        cid = arg_int(a, 0, None, 1, 15)
        if len(a) == 1:
            self.contexts.pop(cid, None)
        else:
            if arg(a, 1).upper() not in ("IP", "IPV6", "IPV4V6"):
                raise CmdError(50)
            self.contexts[cid] = arg(a, 2, "")
        return []

    def _at_cgact(self, kind, a):
        if kind == "?":
            return ["+CGACT: %d,%d" % (cid, 1 if self.pdp_ip and cid == self.pdp_cid else 0)
                    for cid in sorted(self.contexts)]
        if kind != "=":
            raise CmdError(None)
        on = arg_int(a, 0, None, 0, 1)
        cid = arg_int(a, 1, 1, 1, 15)
        if not on:
            if self.pdp_ip:
                self._drop_links()
                self.pdp_ip = None
            return []
        if self.pdp_ip:
            return []
        if not self._pdp_allowed(self.contexts.get(cid, "")):
            raise CmdError(100)
        self._pdp_up(cid)
        return []

    def _at_cgpaddr(self, kind, a):
        if self.pdp_ip:
            return ['+CGPADDR: %d,"%s"' % (self.pdp_cid, self.pdp_ip)]
        return []

    def _at_cclk(self, kind, a):
        if kind != "?":
            raise CmdError(3)
        t = 0
        if self._registered():
            t = self.world.epoch_seconds()
        tm = time.gmtime(t)
        return ['+CCLK: "%02d/%02d/%02d,%02d:%02d:%02d+00"' % (tm[0] % 100, tm[1], tm[2], tm[3],
                                                              tm[4], tm[5])]

    # -- radio -----------------------------------------------------------------------------

    def _set_stat(self, stat):
        if stat == self.stat:
            return
        self.stat = stat
        for name in ("+CREG", "+CGREG", "+CEREG"):
            if self.reg_n[name]:
                self._urc(self._reg_line(name, True))

    def _reg_target(self):
        if self.w_deny:
            return 3
        if self.w_sms_only:
            return 7 if self.roaming else 6
        return 5 if self.roaming else 1

    def _reg_update(self):
        # Brings registration in line with the radio and the world; called on every change.
        if self.state != ON or self.cfun != 1 or not self.sim_present:
            self.searching = False
            self.reg_gen += 1
            if self.state == ON:
                self._lose_data()
                self._set_stat(0)
            return
        if not self.w_coverage:
            if self.stat != 2 or self.searching:
                self.searching = False
                self.reg_gen += 1
                self._set_stat(2)
                self.loss_gen += 1
                gen = self.loss_gen
                self._later(_DATA_LOSS_S * US_PER_S, lambda: self._coverage_gone(gen))
            return
        if self._registered() or self.stat == 3:
            target = self._reg_target()
            if self.stat == 3 and target != 3:
                self._set_stat(2)
                self._search()
            elif target != self.stat:
                if target in (3, 6, 7):
                    self._lose_data()
                self._set_stat(target)
            return
        if not self.searching:
            self._set_stat(2)
            self._search()

    def _search(self):
        self.searching = True
        self.reg_gen += 1
        gen = self.reg_gen
        self._later(self.register_us, lambda: self._search_done(gen))

    def _search_done(self, gen):
        if gen != self.reg_gen or not self.searching:
            return
        self.searching = False
        if self.w_coverage:
            self._set_stat(self._reg_target())

    def _coverage_gone(self, gen):
        if gen == self.loss_gen and not self.w_coverage:
            self._lose_data()

    # -- PDP -------------------------------------------------------------------------------

    def _pdp_allowed(self, apn):
        self._carrier_check()
        if self.stat not in (1, 5) or self.w_data_stop:
            return False
        return not self.net_apn or apn == "" or apn.lower() == self.net_apn.lower()

    def _pdp_up(self, cid):
        r = self.rng
        self.pdp_ip = "10.%d.%d.%d" % (r.below(256), r.below(256), 1 + r.below(254))
        self.pdp_cid = cid

    def _carrier_check(self):
        # The carrier's SIM state (scenario "carrier_states"), looked at when the SIM uses data
        # (a bearer asked for, bytes carried) as the network does; the file is read again only
        # when it changed. A SIM that is not active loses its data as at a data_stop event.
        if self.carrier_states is None:
            return
        try:
            stamp = os.stat(self.carrier_states).st_mtime_ns
        except OSError:
            stamp = None
        if stamp == self.carrier_stamp:
            return
        self.carrier_stamp = stamp
        try:
            states = carrier.read_states(self.carrier_states)
        except carrier.CarrierStatesError:
            return  # a file half made by hand: the carrier keeps what it had
        # The SIM reports its ICCID with an F pad where it has an odd number of digits.
        state = states.get(self.iccid) or states.get(self.iccid.upper().rstrip("F"))
        stop = state is not None and state not in carrier.DATA_FLOWS
        if stop != self.w_data_stop:
            self.w_data_stop = stop
            if stop and self.state == ON:
                self._later(0, self._lose_data)  # not in the middle of a send

    def _data_limit_reached(self):
        # The SIM's billed bytes reached the plan's cap: the carrier stops its data.
        if not self.w_data_stop:
            self.w_data_stop = True
            if self.state == ON:
                self._lose_data()

    def _lose_data(self):
        # The network ends the data session: the family says so, sockets and PDP are gone.
        if self.pdp_ip is None and not self.links:
            return
        self._urcs_data_lost()
        self._drop_links()
        self.pdp_ip = None

    def _urcs_data_lost(self):
        pass
