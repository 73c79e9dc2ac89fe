# The connection manager: brings the cellular link up, keeps it up, and is the one owner of
# retry for it.
#
# Bring-up is power -> sync -> SIM and identity -> APN -> registration -> data attach. A failure
# waits out a backoff (app.backoff: doubling, with jitter so a fleet that lost the same cell
# does not return in step) and tries again. A modem that stops answering climbs an escalation
# ladder, one rung per consecutive failure: re-sync (baud/echo drift), soft reset, PWRKEY power
# cycle, and finally a board reset. Radio-off (flight mode) parks the modem until asked back.
#
# Link state comes as events: the driver sets this manager's `_wake` (its link_event) on every
# URC that changes the link (registration, bearer lost, the modem restarted by itself), so a
# loss is acted on at once, and a registration regained ends a backoff early. While connected,
# a registration read every check_interval_s is the fallback, and finds a modem that hung.
#
# Its status is the driver's status dict (identity, signal, registration, bearer, ip, sim,
# operator, ceer, boot, resets) with the manager's own keys added: state, last error, attach
# time, registration history, escalations.
import asyncio
import gc
import time

from app import backoff
from app.modem.at import ATError, ATTimeout
from app.modem.replies import ModemError

from micropython import const


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
_LADDER = const("resync soft_reset power_cycle board_reset")  # the rungs, in order

_HISTORY = const(8)  # registration changes kept in status
_REG_POLL_MS = const(10000)  # registration read this often while waiting; its URCs come sooner
_BACKOFF_MIN_S = const(5)
_BACKOFF_MAX_S = const(900)  # never more than 15 min between attempts


class ConnectionManager:
    def __init__(self, modem, log, apn="", register_timeout_s=300, check_interval_s=60,
                 reset_board=None):
        self.modem = modem
        self.log = log
        self.apn = apn
        self.register_timeout_s = register_timeout_s  # LTE-M in poor coverage can take minutes
        self.check_interval_s = check_interval_s  # link health check while connected
        self._reset_board = reset_board  # the last rung; machine.reset on a device
        self.connected = asyncio.Event()  # awaited by wait_connected (the uplink)
        self._wake = asyncio.Event()  # link events, radio requests: awaited by the loop
        modem.link_event = self._wake
        self._radio_wanted = True
        self._failures = 0  # consecutive failed bring-ups
        self._unanswered = 0  # consecutive failures where the modem did not answer
        self.status = modem.status
        self.status.update({
            "state": _OFF, "last_error": None, "attach_time_s": None, "attempts": 0,
            "escalations": [], "history": [], "connected_since": None,
            # For the device's health (app.health): failed bring-ups, registrations the
            # network denied by reject cause, and bring-ups in a row the modem did not answer.
            "failures": 0, "rejects": {}, "unanswered": 0,
        })

    # -- control ------------------------------------------------------------------------

    def radio(self, on):
        # Flight mode on request (console, command): the manager parks the modem.
        self._radio_wanted = bool(on)
        self._wake.set()

    async def wait_connected(self, timeout_ms=None):
        if timeout_ms is None:
            await self.connected.wait()
        else:
            await asyncio.wait_for_ms(self.connected.wait(), timeout_ms)

    async def open_socket(self, host, port, timeout_ms=30000):
        # A socket to host:port once the link is up: asyncio.TimeoutError when the link does
        # not come up in timeout_ms, an OSError when the open fails (Modem.open_socket).
        await self.wait_connected(timeout_ms)
        try:
            return await self.modem.open_socket(host, port, timeout_ms)
        except OSError as e:
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
                self.status["unanswered"] = 0
                await self._watch()
            except ATTimeout as e:
                self._record_error(e)
                self._unanswered += 1
                await self._escalate()
            except (ATError, ModemError) as e:
                self._record_error(e)
            self.status["unanswered"] = self._unanswered
            self.connected.clear()
            if self._radio_wanted:
                self._failures += 1
                self.status["failures"] += 1
                await self._backoff()

    async def _bring_up(self):
        status = self.status
        status["attempts"] += 1
        t0 = time.ticks_ms()
        status["state"] = _STARTING
        await self.modem.power_on()
        if status["identity"] is None or self._failures:
            # Read every bring-up after a failure: a SIM swap shows as a new ICCID, a missing
            # or locked SIM as the error that says so.
            await self.modem.identity()
        await self.modem.signal()
        await self.modem.set_apn(self.apn)
        await self._register()
        status["state"] = _ATTACHING
        await self.modem.attach()
        elapsed = time.ticks_diff(time.ticks_ms(), t0)
        status["attach_time_s"] = elapsed / 1000
        status["connected_since"] = time.time()
        status["state"] = _CONNECTED
        self.connected.set()
        self.log.info("modem", "connected in %.1f s" % (elapsed / 1000))

    async def _register(self):
        # Until registered: a read now, then again on each registration URC (or every
        # _REG_POLL_MS without one).
        self.status["state"] = _REGISTERING
        deadline = time.ticks_add(time.ticks_ms(), self.register_timeout_s * 1000)
        while True:
            self._wake.clear()  # before the read: a URC during it wakes the wait below
            reg = await self.modem.registration()
            self._remember(reg)
            if reg["registered"]:
                return
            if reg["denied"]:
                rejects = self.status["rejects"]
                rejects[reg["cause"]] = rejects.get(reg["cause"], 0) + 1
                raise ModemError("registration denied by the network (cause %s)"
                                 % reg["cause"], reg["cause"])
            if reg["sms_only"]:
                raise ModemError("registered for SMS only: no data service")
            if not self._radio_wanted:
                raise ModemError("radio off requested")
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                raise ModemError("not registered after %d s (last state %s)" % (
                    self.register_timeout_s, reg["state"]))
            try:
                await asyncio.wait_for_ms(self._wake.wait(), min(left, _REG_POLL_MS))
            except asyncio.TimeoutError:
                pass

    async def _watch(self):
        # Connected: act at once on a link event, and read the registration now and then.
        while True:
            # A collection first: the wait's task and frames, kept for a minute, then take
            # the heap's lowest holes (docs/firmware.md, Heap).
            gc.collect()
            try:
                await asyncio.wait_for(self._wake.wait(), self.check_interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()  # an event during the checks below wakes the next wait
            if not self._radio_wanted:
                raise ModemError("radio off requested")
            if not self.status["bearer"]:
                # The network ended the data session, or the modem restarted: the driver saw
                # its URC. Registration alone does not carry data.
                raise ModemError("data session lost (%s)" % (self.modem.lost or "no bearer"))
            reg = await self.modem.registration()
            self._remember(reg)
            if not reg["registered"]:
                raise ModemError("lost registration (%s)" % reg["state"])

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
        # Waits out the backoff; a radio request, or registration regained (coverage back),
        # ends it early.
        self.status["state"] = _BACKOFF
        end = time.ticks_add(time.ticks_ms(),
                             1000 * backoff.delay_s(self._failures, _BACKOFF_MIN_S,
                                                    _BACKOFF_MAX_S))
        was = self._registered()
        while True:
            left = time.ticks_diff(end, time.ticks_ms())
            if left <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for_ms(self._wake.wait(), left)
            except asyncio.TimeoutError:
                return
            if not self._radio_wanted or (self._registered() and not was):
                return

    def _registered(self):
        reg = self.status["registration"]
        return bool(reg and reg["registered"])

    async def _park(self):
        self.status["state"] = _RADIO_OFF
        self.connected.clear()
        try:
            await self.modem.radio(False)
        except (ATError, ModemError) as e:
            self._record_error(e)
        while not self._radio_wanted:
            self._wake.clear()
            await self._wake.wait()
        try:
            await self.modem.radio(True)
        except (ATError, ModemError) as e:
            self._record_error(e)

    # -- status -------------------------------------------------------------------------

    def _record_error(self, e):
        self.status["last_error"] = str(e)
        self.log.warning("modem", str(e))

    def _remember(self, reg):
        # Registration changes, the last _HISTORY of them: (time, stat, state).
        history = self.status["history"]
        if not history or history[-1][1] != reg["stat"]:
            _bounded_append(history, (time.time(), reg["stat"], reg["state"]))


def _bounded_append(items, item):
    items.append(item)
    while len(items) > _HISTORY:
        items.pop(0)
