"""The modem's power and pins: PWRKEY, RESET, STATUS and the modem_power line, boot, power-down.

Power and pins (from the board): asserting PWRKEY for at least pwrkey_on_ms switches the modem
on (judged when the key is released); for at least pwrkey_off_ms switches it off. After boot_s
the modem drives STATUS active, sends its boot URCs and answers AT; after an off pulse (or
AT+CPOWD / AT+CPOF / AT+QPOWD) it sends the family's power-down URC, if it has one, and STATUS
falls power_off_s later (sim7080 2 s, sim7600 3 s, bg95 1.5 s, at most the board's
power_off_ms); meanwhile it answers nothing. A RESET pulse of at least 100 ms reboots it; a
modem_power line, when the board has one, must be active for the modem to have any power
(its falling edge cuts it at once). Power loss loses every volatile thing (sockets, PDP,
registration, ATE/CMEE); PDP context definitions (CGDCONT, CNCFG, QICSGP) are kept, as in the
modem's NV.
An ESP32 reset, watchdog or deep sleep does not touch the modem: it runs on the host, beside the
device (musket_sim.coupling), and keeps its state, sockets included; a power-on boot, or a
board with a modem_power line (the enable line falls while the ESP32 resets), finds it off.
"""
from musket_sim.models.modem.common import BOOTING, DEFER, OFF, ON, STOPPING
from musket_sim.models.world import US_PER_MS

_PWRON_RESET = 1  # machine.PWRON_RESET: the board was powered up
_RESET_MIN_MS = 100  # shortest RESET pulse the model takes
_REBOOT_MS = 300  # from AT+CRESET / AT+CFUN=1,1 to the restart


class Power:
    # The modem's power states and the pins that change them (a part of Modem).

    def _wire_pins(self):
        # Watches the pins the firmware drives; STATUS has its level before the firmware looks.
        w = self.world
        w.watch_pin(self.pwrkey["pin"], self._on_pwrkey)
        if self.reset_pin:
            w.watch_pin(self.reset_pin["pin"], self._on_reset)
        if self.power_pin:
            w.watch_pin(self.power_pin["pin"], self._on_supply)
        self._drive_status(False)

    def _level(self, ctl, active):
        high = ctl["active"] == "high"
        return (1 if high else 0) if active else (0 if high else 1)

    def _drive_status(self, active):
        self.world.drive_pin(self.status["pin"], self._level(self.status, active))

    def _esp32_boots(self, reset_cause):
        # A reset, watchdog or deep sleep of the ESP32 does not touch the modem. A power-on
        # boot finds it off (the power was gone), and so does a board with a modem_power line,
        # whose enable falls while the ESP32 resets.
        if reset_cause == _PWRON_RESET or self.power_pin:
            if self.power_pin:
                self.supply = False
            if self.state != OFF:
                self._dead()
            self.iccid = self.slot_iccid
            self.imsi = self._imsi_for(self.iccid)

    def _later(self, delay_us, fn):
        gen = self.gen

        def fire():
            if self.gen == gen:
                fn()
        self.world.at(self.world.now_us + int(delay_us), fire)

    def _released_after(self, key, ctl, level):
        # Follows a control line the firmware pulses: at its release, how long (ms) it was held
        # active; None otherwise.
        since = self.held_since
        if level == self._level(ctl, True):
            if since[key] < 0:
                since[key] = self.world.now_us
            return None
        if since[key] < 0:
            return None
        held_ms = (self.world.now_us - since[key]) // US_PER_MS
        since[key] = -1
        return held_ms

    def _on_pwrkey(self, level):
        held_ms = self._released_after("pwrkey", self.pwrkey, level)
        if held_ms is None or not self.supply:
            return
        if self.state == OFF and held_ms >= self.on_ms:
            self._power_on()
        elif self.state in (BOOTING, ON) and held_ms >= self.off_ms:
            self._power_down(True)

    def _on_reset(self, level):
        held_ms = self._released_after("reset", self.reset_pin, level)
        if held_ms is not None and held_ms >= _RESET_MIN_MS and self.state != OFF:
            self._reboot()

    def _on_supply(self, level):
        supply = level == self._level(self.power_pin, True)
        if supply == self.supply:
            return
        self.supply = supply
        if not supply and self.state != OFF:
            self._dead()

    def _power_on(self):
        self.figures["power_cycles"] += 1
        self.iccid = self.slot_iccid
        self.imsi = self._imsi_for(self.iccid)
        self._start_boot()

    def _start_boot(self):
        self._new_life()
        self.state = BOOTING
        self.hung = False
        self._volatile_reset()
        self._later(self.boot_us, self._booted)

    def _booted(self):
        self.state = ON
        self._drive_status(True)
        for ms, line in (self.BOOT_URCS if self.sim_present else self.NO_SIM_URCS):
            self._urc(line, ms * US_PER_MS)
        self._reg_update()

    def _power_down(self, urc, delay_us=0):
        # The power-down procedure: the family's goodbye, then STATUS falls power_off_s later.
        if urc and self.POWER_DOWN_URC:
            self._urc(self.POWER_DOWN_URC, delay_us)
        self._drop_links()
        self.state = STOPPING
        self.stat = 0
        self.pdp_ip = None
        self._later(self.power_off_us, self._dead)

    def _dead(self):
        # Power gone: STATUS falls, everything volatile is lost.
        self._new_life()
        self._drop_links()
        self.state = OFF
        self.hung = False
        self.stat = 0
        self.pdp_ip = None
        self._drive_status(False)

    def _reboot(self):
        self.figures["reboots"] += 1
        self._drop_links()
        self._drive_status(False)
        self._start_boot()

    def _new_life(self):
        # A power change or a hang: work scheduled in the old life is void, and what waits for
        # the wire is lost.
        self.gen += 1
        self._tx_purge()

    def _restart(self):
        # AT+CRESET, AT+CFUN=1,1: OK, then the modem restarts.
        self._reply((), "OK")
        self._later(_REBOOT_MS * US_PER_MS, self._reboot)
        return DEFER
