# What every modem family shares: the AT sync, what 3GPP TS 27.007 makes common (SIM state,
# identity, +CSQ, +CEREG, +COPS, +CEER, +CGDCONT, +CFUN), the modem's own restarts, and the
# pool of sockets. A family module (sim7080.py, sim7600.py, bg95.py) subclasses Modem,
# overrides class constants (commands, timeouts, sizes, URCs) and provides what 27.007 leaves
# to each vendor:
#   _lte_report() -> dict     the richer signal report (rsrp, rsrq, sinr, act, band, operator)
#   _config_pdp(apn)          the family's own PDP settings after +CGDCONT
#   _activate() / _deactivate()   the data bearer (and its IP address into status["ip"])
#   _open(sock, host, port, timeout_ms), send(sock, chunk), recv(sock, buf) -> (n, more),
#   close_link(sock, was_open)    the TCP socket commands; URC handlers call _link_event().
#
# Its parts live apart: the reply parsers in replies.py, the control lines (PWRKEY, RESET,
# STATUS, supply) in power.py, the socket in tcp.py; this module is what the modem is told
# and what it tells. The module is loaded on the device's heap next to the whole
# application: few functions, short strings.
#
# Link state travels as events: a URC that changes it (registration, bearer lost, the modem
# restarted) updates `status` and sets `link_event`, the asyncio.Event its owner (the
# connection manager) awaits; the owner decides what to do, and retries.
#
# Transports: the links above (MQTT, TLS) use one byte stream, write(data) / read_into(buf) /
# close() / `closed` (tcp.Socket, over the modem's own TCP stack). A PPP link (network.PPP
# on the modem UART in data mode, then lwIP sockets) would be a second class with the same
# four members, chosen by the manager; it would own the UART while it runs, the AT channel
# stopped. Only the AT socket is built.
import asyncio
import errno
import time

from app.modem.at import ATError, ATTimeout
from app.modem.power import Power
from app.modem.replies import (ACT_NAMES, ModemError, find, parse_cereg, parse_cgdcont,
                               parse_cops, parse_csq, parse_id, text)
from app.modem.tcp import Socket

from micropython import const


_SYNC_ATTEMPTS = const(10)  # "AT" probes before the modem counts as silent
_SYNC_TIMEOUT_MS = const(500)  # one probe: a running modem answers "AT" at once
_PROBE_ATTEMPTS = const(2)  # without a STATUS line: is the modem on already?
_CMD_TIMEOUT_MS = const(5000)  # 27.007 commands answer well within this
_CFUN_TIMEOUT_MS = const(15000)  # +CFUN answers within 15 s on all three families
_POWER_CMD_TIMEOUT_MS = const(3000)  # a power-down command's OK comes before the shutdown
_OPEN_TIMEOUT_MS = const(60000)  # DNS plus TCP connect over a slow LTE-M cell
_APN_MAX = const(100)  # 3GPP TS 23.003: an APN is at most 100 octets
# A boot's URCs (RDY, SMS Ready...) come within this of each other and of the power-on or
# reset the driver made; one after a longer quiet means the modem restarted by itself.
_BOOT_SPREAD_MS = const(30000)


class Modem:
    FAMILY = ""
    ICCID_CMD = "AT+CCID"
    INIT_CMDS = ()  # type: tuple  # after ATE0 and AT+CMEE=2
    SOFT_RESET_CMD = "AT+CFUN=1,1"
    POWER_OFF_CMD = ""  # graceful power-down tried before PWRKEY, if any
    REG_CMDS = ("+CEREG",)  # type: tuple  # registration reads, by preference
    ACT_NAMES = ACT_NAMES
    PDP_TYPE = "IP"
    REPLY_URCS = ()  # type: tuple  # results that come as URCs after OK; see _reply()
    BOOT_URCS = ("RDY",)  # type: tuple  # what the modem says as it starts
    AT_ERRORS = ()  # type: tuple  # the family's own error results (ATChannel.add_error)
    RESET_PULSE_MS = 500
    ATTACH_TIMEOUT_MS = 60000
    DETACH_TIMEOUT_MS = 40000
    SEND_TIMEOUT_MS = 10000
    CLOSE_TIMEOUT_MS = 10000
    MAX_SEND = 1460  # bytes per send command
    MAX_READ = 1460  # bytes per read command
    READ_COMMAND = ""  # "AT+...=<link>,<len>" with two %d
    READ_DATA = ("", b"\n", 0)  # reply prefix, end of its header, field holding the length
    CLOSE_COMMAND = ""  # "AT+...=<link>" with one %d
    RX_BUFFER = 512  # each socket's receive buffer
    # Links handed out at once, each made here once with its buffer: the uplink's one
    # connection (every family has more links; each one more costs the heap a buffer).
    SOCKETS = 1

    def __init__(self, channel, board, log):
        self.ch = channel
        self.log = log
        self.power = Power(board)
        self.sockets = [Socket(self, i, self.RX_BUFFER) for i in range(self.SOCKETS)]
        self.link_event = None  # the owner's asyncio.Event, set on every change of link state
        self.datause = None  # app.datause.DataUse: told of each socket's traffic (tcp.py)
        self.lost = None  # why the bearer went, as the last loss the modem reported
        self._apn = ""
        self._awaiting = None  # prefix of the reply URC a command waits for
        self._reply_line = None
        self._reply_event = asyncio.Event()
        self._reply_idle = asyncio.Event()  # set when no command waits for its reply URC
        self._boot_seen = time.ticks_ms()  # the last boot URC, power-on or reset
        self.status = {"family": self.FAMILY, "identity": None, "signal": None,
                       "registration": None, "bearer": False, "ip": None, "sim": None,
                       "operator": None, "ceer": None, "boot": None,
                       "resets": 0}  # type: dict
        for prefix in self.AT_ERRORS:
            channel.add_error(prefix)
        channel.on_urc("+CEREG:", self._on_cereg)
        channel.on_urc("+CPIN:", self._on_cpin)
        for prefix in self.BOOT_URCS:
            channel.on_urc(prefix, self._on_boot)
        for prefix in self.REPLY_URCS:
            channel.on_urc(prefix, self._on_reply)

    # -- AT helpers -------------------------------------------------------------------------

    async def _at(self, cmd, what=None, timeout_ms=_CMD_TIMEOUT_MS, **kw):
        # A refusal becomes a ModemError saying `what` was being done; without `what` it is
        # no error (a report without service) and returns None. A timeout stays ATTimeout:
        # the modem may be hung, and the manager escalates on those.
        try:
            return await self.ch.command(cmd, timeout_ms, **kw)
        except ATTimeout:
            raise
        except ATError as e:
            if what is None:
                self.log.debug("modem", str(e))
                return None
            raise ModemError("%s: %s" % (what, e), e.code)

    def _on_reply(self, line):
        if self._awaiting is not None and line.startswith(self._awaiting):
            self._reply_line = line
            self._reply_event.set()
        else:
            self.log.debug("modem", "late: " + line)

    async def _reply(self, cmd, prefix, what, timeout_ms, cmd_timeout_ms=_CMD_TIMEOUT_MS, **kw):
        # Sends cmd; its result is a `prefix` line sent after OK (or before ERROR), caught by
        # _on_reply. Returns that line's fields; the caller reads its result code.
        # One such command at a time, from its command to its reply: two tasks' sends on one
        # link (a PUBACK and a reply) wait for the same prefix, and the first one's reply
        # must not answer the second.
        while self._awaiting is not None:
            self._reply_idle.clear()
            await self._reply_idle.wait()
        self._awaiting = prefix
        self._reply_line = None
        self._reply_event.clear()
        try:
            try:
                await self._at(cmd, what, cmd_timeout_ms, **kw)
            except ModemError:
                if self._reply_line is None:
                    raise
            if self._reply_line is None:
                try:
                    await asyncio.wait_for_ms(self._reply_event.wait(), timeout_ms)
                except asyncio.TimeoutError:
                    raise ModemError("%s: no %s in %d ms" % (what, prefix, timeout_ms))
            return find((self._reply_line,), prefix)
        finally:
            self._awaiting = None
            self._reply_idle.set()

    # -- events ------------------------------------------------------------------------------

    def _changed(self):
        if self.link_event is not None:
            self.link_event.set()

    def _forget(self, why=None):
        # The bearer and every link are gone. `why`: the network or the modem ended them
        # (not this driver), which the link's owner hears of at once.
        self.status["bearer"] = False
        self.status["ip"] = None
        for s in self.sockets:
            if s.held:
                s.ended(errno.ECONNRESET)
        if why:
            self.log.warning("modem", why)
            self.lost = why
            self._changed()

    def _on_cereg(self, line):
        reg = parse_cereg(line, self.ACT_NAMES)
        reg["source"] = "CEREG"
        self._keep_registration(reg)
        self._changed()

    def _keep_registration(self, reg):
        # -> the registration the status keeps: reg when it differs from the kept one, else
        # the kept one, and reg is left to the next collection. Registration is read every
        # minute and its reader holds what this returns until the next read: a new dict each
        # time would land wherever the heap had room at that moment, often inside its one
        # large free block (docs/firmware.md, Heap).
        if reg != self.status.get("registration"):
            self.status["registration"] = reg
        return self.status["registration"]

    def _on_cpin(self, line):
        self.status["sim"] = text((line,), "+CPIN:")

    def _on_boot(self, line):
        # The modem (re)started: expected after a power-on or reset, else it restarted by
        # itself (brown-out, its own watchdog) and took the bearer, the sockets and the
        # settings of sync() with it.
        now = time.ticks_ms()
        quiet = time.ticks_diff(now, self._boot_seen) > _BOOT_SPREAD_MS
        self._boot_seen = now
        self.status["boot"] = line
        if quiet:
            self.status["resets"] += 1
            self._forget("modem restarted by itself: " + line)

    # -- power -------------------------------------------------------------------------------

    def is_powered(self):
        # From the STATUS line; None when the board has none.
        return self.power.is_on()

    async def power_on(self):
        # Leaves the modem on and in sync. One already on (STATUS active, or without STATUS
        # answering AT) gets no PWRKEY pulse, which would switch it off.
        self.power.supply(True)
        self._boot_seen = time.ticks_ms()
        on = self.power.is_on()
        if on:
            return await self.sync()
        if on is None:
            try:
                return await self.sync(_PROBE_ATTEMPTS)
            except ATError as e:  # silent: off, so press PWRKEY
                self.log.info("modem", "%s: PWRKEY" % e)
        await self.power.press(self.power.on_ms)
        await self._boot()

    async def _boot(self):
        # After PWRKEY or RESET: STATUS, then AT, each given the board's boot time.
        boot_ms = self.power.boot_ms
        if await self.power.wait(True, boot_ms) is False:
            self.log.warning("modem", "no STATUS after %d ms" % boot_ms)
        await self.sync(_SYNC_ATTEMPTS + boot_ms // _SYNC_TIMEOUT_MS)

    async def power_off(self):
        self._forget()
        if self.power.is_on() is not False:
            done = None
            if self.POWER_OFF_CMD:
                try:
                    done = await self._at(self.POWER_OFF_CMD, None, _POWER_CMD_TIMEOUT_MS)
                except ATTimeout as e:  # a hung modem still obeys PWRKEY
                    self.log.info("modem", str(e))
            if done is None:
                await self.power.press(self.power.off_ms)
            ms = self.power.off_wait_ms
            off = await self.power.wait(False, ms)
            if off is None:
                await asyncio.sleep_ms(ms)
            elif not off and not self.power.has_supply:
                raise ModemError("power off: STATUS still active after %d ms" % ms)
        self.power.supply(False)

    async def power_cycle(self):
        try:
            await self.power_off()
        except ModemError as e:
            self.log.warning("modem", str(e))
        await self.power_on()

    async def hard_reset(self):
        # The RESET line when the board has one, else a power cycle.
        if not self.power.has_reset:
            return await self.power_cycle()
        self._forget()
        self._boot_seen = time.ticks_ms()
        await self.power.reset(self.RESET_PULSE_MS)
        await self._boot()

    async def soft_reset(self):
        self._boot_seen = time.ticks_ms()
        await self._at(self.SOFT_RESET_CMD, "soft reset", _CFUN_TIMEOUT_MS)
        self._forget()
        await asyncio.sleep_ms(self.power.boot_ms)
        await self.sync()

    async def sync(self, attempts=_SYNC_ATTEMPTS):
        # "AT" until OK: after power-on, or when echo or baud drifted. Then echo off, verbose
        # errors, the family's own settings, and registration URCs with the reject cause
        # (AT+CEREG=3; a modem without that mode gets location only, AT+CEREG=2).
        last = None
        for _ in range(attempts):
            try:
                await self.ch.command("AT", _SYNC_TIMEOUT_MS)
                break
            except ATError as e:  # timeouts and garbage while the modem boots
                last = e
        else:
            raise ATTimeout("AT", "no answer in %d tries (%s)" % (attempts, last))
        # Lists, not tuples, of short strings here and below: a constant tuple's strings each
        # cost heap for as long as the module is loaded.
        for cmd in ["ATE0", "AT+CMEE=2"] + list(self.INIT_CMDS):
            await self._at(cmd, "sync")
        if await self._at("AT+CEREG=3") is None:
            await self._at("AT+CEREG=2", "registration URCs")
        self._boot_seen = time.ticks_ms()

    # -- SIM, identity, signal, registration -----------------------------------------------

    async def sim(self):
        # The SIM's state as +CPIN names it (READY, SIM PIN, SIM PUK...); anything but READY
        # is an error that says so. No SIM is a refusal (+CME ERROR: 10, SIM not inserted).
        try:
            state = text(await self._at("AT+CPIN?", "sim", expect="+CPIN:"), "+CPIN:")
        except ModemError as e:
            state = str(e.code or "ERROR")
        self.status["sim"] = state
        if state != "READY":
            raise ModemError("sim: %s" % state)

    async def identity(self):
        await self.sim()
        ident = {}
        for what, cmd in [["iccid", self.ICCID_CMD], ["imei", "AT+CGSN"], ["imsi", "AT+CIMI"],
                          ["revision", "AT+CGMR"]]:
            ident[what] = parse_id(await self._at(cmd, what + " read"), what)
        self.status["identity"] = ident
        return ident

    async def signal(self):
        # AT+CSQ plus the family's LTE report; what a modem without service cannot tell is
        # None, never an error.
        s = {"rsrp": None, "rsrq": None, "sinr": None, "act": None, "band": None,
             "operator": None}
        s.update(parse_csq(await self._at("AT+CSQ", "signal read")))
        s.update(await self._lte_report())
        self.status["signal"] = s
        return s

    async def registration(self):
        # The first of REG_CMDS that shows data service; else the first (+CEREG), which says
        # why not (denied, searching...). A denial also reads the modem's report (+CEER).
        best = None
        for name in self.REG_CMDS:
            lines = await self._at("AT%s?" % name, "registration read", expect=name)
            f = find(lines, name + ":")
            if f is None:
                raise ModemError("registration: no %s in %r" % (name, lines))
            r = parse_cereg(name + ":" + ",".join(f), self.ACT_NAMES)
            r["source"] = name[1:]
            if best is None or r["registered"]:
                best = r
            if r["registered"]:
                break
        best = self._keep_registration(best)
        if best["denied"]:
            await self.cause()
        return best

    async def cause(self):
        # The modem's own report on why the last registration, attach or session failed
        # (AT+CEER), into status["ceer"]; a modem that refuses it reports nothing.
        self.status["ceer"] = text(await self._at("AT+CEER") or (), "+CEER:")

    # -- bearer ------------------------------------------------------------------------------

    async def set_apn(self, apn):
        # Context 1 gets the APN; other contexts with another APN are cleared, so a stale one
        # left by a previous SIM or firmware cannot be what the network attaches with. An
        # empty APN asks for the network's default (LTE assigns one at attach).
        if len(apn) > _APN_MAX or '"' in apn or "," in apn:
            raise ModemError("apn: bad APN %r" % (apn,))
        self._apn = apn
        have = None
        for cid, pdp_type, ctx_apn in parse_cgdcont(await self._at("AT+CGDCONT?", "apn read")):
            if cid == 1:
                have = (pdp_type, ctx_apn)
            elif ctx_apn != apn:
                # A refusal (a context the firmware keeps) is logged, not fatal.
                await self._at("AT+CGDCONT=%d" % cid)
        if have != (self.PDP_TYPE, apn):
            await self._at('AT+CGDCONT=1,"%s","%s"' % (self.PDP_TYPE, apn), "apn set")
        await self._config_pdp(apn)

    async def attach(self):
        # Brings the data bearer up; an SMS-only or denied network is a clear error. The
        # operator's name (+COPS) and the bearer's address go into status.
        reg = await self.registration()
        if reg["denied"]:
            why = "registration denied (cause %s)" % reg["cause"]
        elif reg["sms_only"]:
            why = "the network offers SMS only (%s)" % reg["state"]
        elif not reg["registered"]:
            why = "not registered (%s)" % reg["state"]
        else:
            why = None
        if why:
            if not reg["denied"]:
                await self.cause()
            raise ModemError("attach: " + why, reg["cause"])
        self.status["operator"] = parse_cops(await self._at("AT+COPS?") or ())
        try:
            await self._activate()
        except ModemError:
            await self.cause()
            if self.datause is not None:  # the carrier may have stopped the SIM's data
                self.datause.bearer_refused(self.status["ceer"])
            raise
        self.status["bearer"] = True
        self.lost = None
        if self.datause is not None:
            self.datause.bearer_up()

    async def detach(self):
        self._forget()
        await self._deactivate()

    async def radio(self, on):
        # AT+CFUN=1, or flight mode (AT+CFUN=4).
        if not on:
            self._forget()
        await self._at("AT+CFUN=1" if on else "AT+CFUN=4", "radio", _CFUN_TIMEOUT_MS)

    # -- sockets -----------------------------------------------------------------------------

    async def open_socket(self, host, port, timeout_ms=_OPEN_TIMEOUT_MS):
        # A TCP connection on a free link. As a socket's connect, a failure is an OSError:
        # EINVAL for a bad address, ECONNREFUSED when the modem refused (its message has the
        # family's result code), ETIMEDOUT, ENOBUFS when every link is in use.
        if not host or '"' in host or "," in host or not 0 < port < 65536:
            raise OSError(errno.EINVAL, "open: bad address %r:%r" % (host, port))
        for s in self.sockets:
            if not s.held:
                s.opening()  # before the command: URCs may come right behind its result
                try:
                    await self._open(s, host, port, timeout_ms)
                except ATTimeout as e:
                    s.abandon()
                    raise OSError(errno.ETIMEDOUT, str(e))
                except (ATError, ModemError) as e:
                    s.abandon()
                    raise OSError(errno.ECONNREFUSED, str(e))
                if self.datause is not None:
                    self.datause.opened()
                return s
        raise OSError(errno.ENOBUFS, "open: all %d sockets in use" % self.SOCKETS)

    async def _family(self, *args):
        raise NotImplementedError

    # The family's part (see the top of this module).
    _lte_report = _config_pdp = _activate = _deactivate = _open = send = _family

    def _link_event(self, field, data):
        # A URC naming a link: data arrived (data=True) or the remote end closed it.
        link = self._socket(field)
        if link is not None:
            if data:
                link.data()
            else:
                link.ended()

    def _socket(self, field):
        # The held socket a URC's link field names, or None.
        try:
            i = int(field.strip().strip('"'))
        except ValueError:
            return None
        s = self.sockets[i] if 0 <= i < len(self.sockets) else None
        return s if s is not None and s.held else None

    async def recv(self, sock, buf):
        # The families whose read command answers "<prefix> <n>" and then n raw bytes
        # (READ_DATA says where the length is and where the data starts).
        want = min(len(buf), self.MAX_READ)
        prefix, terminator, field = self.READ_DATA
        lines = await self._at(self.READ_COMMAND % (sock.link, want), "read",
                               data=(prefix, terminator, buf, field))
        if find(lines, prefix) is None:
            raise ModemError("read: bad reply %r" % (lines,))
        n = self.ch.data_length()
        return n, n == want

    async def close_link(self, sock, was_open):
        # A close the remote end may have beaten us to: then a refusal is expected.
        try:
            await self._at(self.CLOSE_COMMAND % sock.link, "close %d" % sock.link,
                           self.CLOSE_TIMEOUT_MS)
        except ModemError as e:
            if was_open:
                raise
            self.log.debug("modem", str(e))
