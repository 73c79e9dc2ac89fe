# The connection manager: brings the cellular link up and keeps it up.
#
# Bring-up is power -> sync -> identity -> APN -> registration -> data attach. A failure waits
# out a backoff (doubling, with jitter so a fleet that lost the same cell does not return in
# step) and tries again. A modem that stops answering climbs an escalation ladder, one rung per
# consecutive failure: re-sync (baud/echo drift), soft reset, PWRKEY power cycle, and finally
# a board reset. Radio-off (flight mode) parks the modem until asked back.
#
# Everything the console and telemetry need is in `status`: state, last error, attach time,
# registration history, escalations.
import asyncio
import random
import time

from app.modem.at import ATError, ATTimeout
from app.modem.base import ModemError

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


# States and rungs as status shows them; const() so that none is a module global, which costs
# heap for each name.
_OFF = const("off")
_STARTING = const("starting")  # power and sync
_REGISTERING = const("registering")
_ATTACHING = const("attaching")
_CONNECTED = const("connected")
_BACKOFF = const("backoff")
_RADIO_OFF = const("radio_off")

_RESYNC = const("resync")
_SOFT_RESET = const("soft_reset")
_POWER_CYCLE = const("power_cycle")
_BOARD_RESET = const("board_reset")
_LADDER = const("resync soft_reset power_cycle board_reset")  # the rungs, in order

_HISTORY = const(8)  # registration changes kept in status
_REG_POLL_MS = const(2000)  # how often registration is read while waiting for it
_BACKOFF_MIN_S = const(5)
_BACKOFF_MAX_S = const(900)  # never more than 15 min between attempts
_JITTER_PERCENT = const(25)


class ConnectionManager:
    def __init__(self, modem, log, apn="", register_timeout_s=300, check_interval_s=60,
                 reset_board=None):
        self.modem = modem
        self.log = log
        self.apn = apn
        self.register_timeout_s = register_timeout_s  # LTE-M in poor coverage can take minutes
        self.check_interval_s = check_interval_s  # link health check while connected
        self._reset_board = reset_board  # the last rung; machine.reset on a device
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._radio_wanted = True
        self._failures = 0  # consecutive failed bring-ups
        self._unanswered = 0  # consecutive failures where the modem did not answer
        self._bringup_start = 0
        self.status = {
            "state": _OFF, "last_error": None, "attach_time_s": None, "attempts": 0,
            "escalations": [], "registration": [], "connected_since": None,
            "identity": None, "signal": None,
        }

    # -- control ------------------------------------------------------------------------

    def radio(self, on):
        # Flight mode on request (console, command): the manager parks the modem.
        self._radio_wanted = bool(on)
        self._wake.set()

    def link_lost(self, why):
        # Called when a data session or socket reports the network gone.
        if self.status["state"] == _CONNECTED:
            self.log.warning("modem", "link lost: " + why)
            self.connected.clear()
            self.status["state"] = _BACKOFF
            self._wake.set()

    async def wait_connected(self, timeout_ms=None):
        if timeout_ms is None:
            await self.connected.wait()
        else:
            await asyncio.wait_for_ms(self.connected.wait(), timeout_ms)

    async def open_socket(self, host, port, timeout_ms=30000):
        await self.wait_connected(timeout_ms)
        try:
            return await self.modem.open_socket(host, port, timeout_ms)
        except (ATError, ModemError) as e:
            self._record_error(e)
            raise

    # -- the loop -----------------------------------------------------------------------

    async def run(self):
        while True:
            if not self._radio_wanted:
                await self._park()
                continue
            try:
                await self._bring_up()
                self._failures = 0
                self._unanswered = 0
                await self._watch()
            except ATTimeout as e:
                self._record_error(e)
                self._unanswered += 1
                await self._escalate()
            except (ATError, ModemError) as e:
                self._record_error(e)
            self.connected.clear()
            self._failures += 1
            await self._backoff()

    async def _bring_up(self):
        self.status["attempts"] += 1
        self._bringup_start = time.ticks_ms()
        self.status["state"] = _STARTING
        await self.modem.power_on()
        if self.status["identity"] is None or self._failures:
            # Read every bring-up after a failure: a SIM swap shows as a new ICCID.
            self.status["identity"] = await self.modem.identity()
        self.status["signal"] = await self.modem.signal()
        await self.modem.set_apn(self.apn)
        await self._register()
        self.status["state"] = _ATTACHING
        await self.modem.attach()
        elapsed = time.ticks_diff(time.ticks_ms(), self._bringup_start)
        self.status["attach_time_s"] = elapsed / 1000
        self.status["connected_since"] = time.time()
        self.status["state"] = _CONNECTED
        self.connected.set()
        self.log.info("modem", "connected in %.1f s" % (elapsed / 1000))

    async def _register(self):
        self.status["state"] = _REGISTERING
        deadline = time.ticks_add(time.ticks_ms(), self.register_timeout_s * 1000)
        last = None
        while True:
            reg = await self.modem.registration()
            if reg["stat"] != last:
                last = reg["stat"]
                self._remember_registration(reg)
            if reg["registered"]:
                return
            if reg["denied"]:
                raise ModemError("registration denied by the network")
            if reg["sms_only"]:
                raise ModemError("registered for SMS only: no data service")
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise ModemError("not registered after %d s (last state %s)" % (
                    self.register_timeout_s, reg["state"]))
            await asyncio.sleep_ms(_REG_POLL_MS)

    async def _watch(self):
        # Connected: check the registration now and then, and wake at once on link loss.
        while True:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.check_interval_s)
            except asyncio.TimeoutError:
                pass
            if not self._radio_wanted or self.status["state"] != _CONNECTED:
                raise ModemError("link lost")
            reg = await self.modem.registration()
            history = self.status["registration"]
            if not history or history[-1][1] != reg["stat"]:
                self._remember_registration(reg)
            if not reg["registered"]:
                self.connected.clear()
                raise ModemError("lost registration (%s)" % reg["state"])
            if not self.modem.status["bearer"]:
                # The network ended the data session (the driver saw its URC); registration
                # alone does not carry data.
                self.connected.clear()
                raise ModemError("data session lost")

    async def _escalate(self):
        # One rung up per consecutive unanswered bring-up; the first rung is cheap.
        rungs = _LADDER.split()
        rung = rungs[min(self._unanswered - 1, len(rungs) - 1)]
        _bounded_append(self.status["escalations"], (time.time(), rung))
        self.log.warning("modem", "not answering: " + rung)
        try:
            if rung == _RESYNC:
                await self.modem.sync()
            elif rung == _SOFT_RESET:
                await self.modem.soft_reset()
            elif rung == _POWER_CYCLE:
                await self.modem.power_cycle()
            elif self._reset_board is not None:
                self._reset_board()
        except (ATError, ModemError) as e:
            self._record_error(e)

    async def _backoff(self):
        self.status["state"] = _BACKOFF
        delay = min(_BACKOFF_MAX_S, _BACKOFF_MIN_S << min(self._failures - 1, 10))
        jitter = delay * _JITTER_PERCENT // 100
        delay += random.randint(-jitter, jitter) if jitter else 0
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except asyncio.TimeoutError:
            pass

    async def _park(self):
        self.status["state"] = _RADIO_OFF
        self.connected.clear()
        try:
            await self.modem.radio(False)
        except (ATError, ModemError) as e:
            self._record_error(e)
        self._wake.clear()
        await self._wake.wait()
        if self._radio_wanted:
            try:
                await self.modem.radio(True)
            except (ATError, ModemError) as e:
                self._record_error(e)

    # -- status -------------------------------------------------------------------------

    def _record_error(self, e):
        self.status["last_error"] = str(e)
        self.log.warning("modem", str(e))

    def _remember_registration(self, reg):
        _bounded_append(self.status["registration"], (time.time(), reg["stat"], reg["state"]))


def _bounded_append(items, item):
    items.append(item)
    while len(items) > _HISTORY:
        items.pop(0)
