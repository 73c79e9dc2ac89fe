# What every modem family shares: power and reset through the board's pins, the AT sync, and
# what 3GPP TS 27.007 makes common (identity, +CSQ, +CEREG, +CGDCONT, +CFUN). A family module
# (sim7080.py, sim7600.py, bg95.py) subclasses Modem, overrides class constants (commands,
# timeouts, sizes) and provides what 27.007 leaves to each vendor:
#   _lte_report() -> dict     the richer signal report (rsrp, rsrq, sinr, act, band, operator)
#   _config_pdp(apn)          the family's own PDP settings after +CGDCONT
#   _activate() / _deactivate()   the data bearer
#   _open(sock, host, port, timeout_ms), _send(sock, chunk), _recv(sock, buf) -> (n, more),
#   _close(sock, was_open)    the TCP socket commands; URC handlers call _link_event().
#
# Parsers are module-level functions taking reply lines, so tests run them without a modem.
# The module is loaded on a 64K heap next to the whole application: few functions, short
# strings (every function and string constant costs RAM once imported).
#
# Transports: the links above (MQTT, TLS) use one byte stream, write(data) / read_into(buf) /
# close() / `closed`. Socket below is that stream over the modem's own TCP stack. A PPP link
# (network.PPP on the modem UART in data mode, then lwIP sockets) would be a second class with
# the same four members, chosen by the manager; it would own the UART while it runs, the AT
# channel stopped. Only the AT socket is built.
import asyncio
import time

import machine

from app.errors import FirmwareError
from app.modem.at import ATError, ATTimeout

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


_SYNC_ATTEMPTS = const(10)  # "AT" probes before the modem counts as silent
_SYNC_TIMEOUT_MS = const(500)  # one probe: a running modem answers "AT" at once
_PROBE_ATTEMPTS = const(2)  # without a STATUS line: is the modem on already?
_POLL_MS = const(50)  # STATUS line polling
_CMD_TIMEOUT_MS = const(5000)  # 27.007 commands answer well within this
_CFUN_TIMEOUT_MS = const(15000)  # +CFUN answers within 15 s on all three families
_POWER_CMD_TIMEOUT_MS = const(3000)  # a power-down command's OK comes before the shutdown
_OPEN_TIMEOUT_MS = const(60000)  # DNS plus TCP connect over a slow LTE-M cell
_APN_MAX = const(100)  # 3GPP TS 23.003: an APN is at most 100 octets

# 27.007 +CREG/+CGREG/+CEREG <stat>, by code: one string of names, split when read (a tuple's
# strings would each cost heap).
STATES = ("not_registered home searching denied unknown roaming sms_only_home sms_only_roaming "
          "emergency_only csfb_not_preferred_home csfb_not_preferred_roaming emergency_bearer")
# 27.007 <AcT> by code: GSM, GSM compact, UTRAN, EGPRS, HSDPA, HSUPA, HSPA, E-UTRAN,
# EC-GSM-IoT, E-UTRAN NB-S1. A family whose manual numbers them otherwise overrides it. One
# string of names, split when read: a tuple's strings would each cost heap.
ACT_NAMES = "GSM GSM UMTS EDGE HSPA HSPA HSPA LTE EC-GSM-IoT NB-IoT"


class ModemError(FirmwareError):
    # The modem refused, or answered something that makes no sense; `code` is the +CME code
    # (int, or text under AT+CMEE=2) or the family's result code, when there is one.
    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


def bad_reply(what, reply):
    # The error for a reply (a line or a list of lines) that makes no sense.
    return ModemError("%s: bad reply %r" % (what, reply))


# -- parsers: reply lines in, values out ---------------------------------------------------

def val(field):
    # A field without its spaces and quotes.
    return field.strip().strip('"')


def num(field):
    # An int field, or None when empty or not a number.
    try:
        return int(val(field))
    except ValueError:
        return None


def find(lines, prefix):
    # The fields after `prefix` on the first line carrying it (quotes kept), or None.
    for line in lines:
        if line.startswith(prefix):
            return [f.strip() for f in line[len(prefix):].split(",")]
    return None


def result(lines, prefix):
    # The result code first after `prefix` ("+CAOPEN: 0," -> 0 or an error code), or None.
    f = find(lines, prefix)
    return num(f[0]) if f else None


def parse_cgdcont(lines):
    # +CGDCONT: <cid>,<PDP_type>,<APN>[,...] -> [(cid, type, apn)]
    out = []
    for line in lines:
        f = find((line,), "+CGDCONT:")
        if f is not None:
            if len(f) < 3 or num(f[0]) is None:
                raise bad_reply("apn", line)
            out.append((num(f[0]), val(f[1]), val(f[2])))
    return out


def parse_id(lines, what):
    # "iccid", "imei", "imsi" or "revision" from a reply in any family's form: bare, after a
    # prefix (+CCID:, +ICCID:, +QCCID:, Revision:, +CGMR:), quoted; an ICCID's F padding goes.
    for line in lines:
        v = val(line[line.find(":") + 1:])
        if what == "revision":
            if v:
                return v
            continue
        if what == "iccid":
            v = v.rstrip("Ff")
        # ITU-T E.118 ICCID 19-22 digits, IMEI 15, IMSI up to 15 (MCC + MNC + MSIN)
        lo, hi = (19, 22) if what == "iccid" else (15, 15) if what == "imei" else (14, 15)
        if v.isdigit() and lo <= len(v) <= hi:
            if what == "imei":  # Luhn check digit
                total = 0
                for i in range(15):
                    d = (ord(v[14 - i]) - 48) * (1 + i % 2)
                    total += d - 9 if d > 9 else d
                if total % 10:
                    raise ModemError("imei: %s fails its Luhn check" % v)
            return v
    raise ModemError("%s: none in reply %r" % (what, lines))


def parse_csq(lines):
    # +CSQ: <rssi>,<ber>: rssi 0..31 is -113 dBm + 2 dBm a step, 99 unknown; ber 0..7.
    f = find(lines, "+CSQ:") or ()
    rssi, ber = (num(f[0]), num(f[1])) if len(f) == 2 else (None, None)
    if rssi is None or ber is None:
        raise bad_reply("signal", lines)
    return {"rssi_dbm": -113 + 2 * rssi if 0 <= rssi <= 31 else None,
            "ber": ber if 0 <= ber <= 7 else None}


def parse_cereg(line, act_names=ACT_NAMES):
    # +CEREG (and +CREG/+CGREG) as AT+CEREG? answers, "<n>,<stat>[,<tac>,<ci>,<AcT>[,
    # <cause_type>,<reject_cause>]]", or as a URC, "<stat>[,<tac>,...]". Area and cell codes
    # are quoted hex, so a bare number second means the first was <n>.
    f = [x.strip() for x in line[line.find(":") + 1:].split(",")]
    if len(f) > 1 and f[1] and f[1][0] != '"':
        f = f[1:]
    stat = num(f[0])
    states = STATES.split()
    if stat is None or not 0 <= stat < len(states):
        raise bad_reply("registration", line)
    f += [""] * (6 - len(f))
    act = num(f[3])
    if act is not None:
        names = act_names.split()
        act = names[act] if act < len(names) else str(act)
    return {
        "stat": stat, "state": states[stat],
        "registered": stat in (1, 5, 9, 10),  # registered with data (EPS) service
        "denied": stat == 3, "sms_only": stat in (6, 7),
        "tac": val(f[1]).upper() or None, "ci": val(f[2]).upper() or None, "act": act,
        "cause": num(f[5]),  # EMM reject cause
    }


def lte_act(mode):
    # A serving system as +CPSI, +QCSQ and +QNWINFO name it: "LTE CAT-M1", "eMTC", "CAT-NB1",
    # "NBIoT", "NO SERVICE"/"NOSERVICE"/"No Service", "LTE", "GSM", "WCDMA".
    m = val(mode).upper()
    if "CAT-M" in m or m == "EMTC":
        return "LTE-M"
    if "NB" in m:
        return "NB-IoT"
    if m.startswith("NO"):
        return None
    return "UMTS" if m == "WCDMA" else val(mode)


def band(text):
    # "EUTRAN-BAND3" / "LTE BAND 3" -> 3; other band names stay text.
    t = val(text)
    i = t.upper().find("BAND")
    return int(t[i + 4:]) if i >= 0 and t[i + 4:].strip().isdigit() else t or None


def parse_cpsi(lines, scale, snr_mul, snr_add):
    # SIMCom's +CPSI: <mode>,<op mode>[,<MCC>-<MNC>,<TAC>,<SCellID>,<PCellID>,<band>,<earfcn>,
    # <dlbw>,<ulbw>,<RSRQ>,<RSRP>,<RSSI>,<RSSNR>] on LTE. RSRQ and RSRP are divided by `scale`
    # and SINR = RSSNR * snr_mul + snr_add: the SIMCom families print different units.
    f = find(lines, "+CPSI:")
    if not f:
        return {}
    out = {"act": lte_act(f[0])}
    if out["act"] and len(f) > 2:
        out["operator"] = val(f[2]) or None
    if out["act"] and len(f) >= 14 and f[0].upper().startswith("LTE"):
        rsrq, rsrp, snr = num(f[10]), num(f[11]), num(f[13])
        out["band"] = band(f[6])
        out["rsrq"] = rsrq / scale if rsrq is not None and scale != 1 else rsrq
        out["rsrp"] = rsrp / scale if rsrp is not None and scale != 1 else rsrp
        out["sinr"] = snr * snr_mul + snr_add if snr is not None else None
    return out


# -- pins: (machine.Pin, level that asserts the line) -------------------------------------

def _pin(spec, mode=-1):
    # A control line from /board.json, {"pin": n, "active": "high"|"low"}: `active` is the
    # GPIO level that asserts it, as the ESP32 sees it after any transistor.
    if spec:
        return machine.Pin(spec["pin"], mode), 0 if spec.get("active") == "low" else 1
    return None


def _drive(line, on):
    # Asserts or releases a control line; a line the board lacks (None) is left alone.
    if line:
        line[0].init(machine.Pin.OUT, value=line[1] if on else 1 - line[1])


# -- the stream ----------------------------------------------------------------------------

class Socket:
    # One TCP connection on the modem, link number `link`. Objects are made once per link and
    # reused, each with its receive buffer; the family's URC handlers mark data and closure.
    def __init__(self, modem, link, rx_size):
        self._modem = modem
        self.link = link
        self._rx = bytearray(rx_size)
        self._start = self._end = 0
        self._event = asyncio.Event()
        self._readable = False  # the modem may hold data for us (URC seen, not drained)
        self.held = False  # the link is ours until close() releases it
        self.closed = True

    def _wake(self, data):
        # From URC handlers: data arrived (True), or the link went down (False).
        if data:
            self._readable = True
        else:
            self.closed = True
        self._event.set()

    async def write(self, data):
        mv = memoryview(data)
        step = self._modem.MAX_SEND
        i = 0
        while i < len(mv):
            if self.closed:
                raise ModemError("send %d: closed" % self.link)
            chunk = mv[i:i + step]
            await self._modem._send(self, chunk)
            i += len(chunk)
        return i

    async def read_into(self, buf):
        # Waits for data; returns the bytes copied into buf, 0 once the link is closed and
        # nothing is left. Data goes modem -> this socket's buffer -> buf, so small reads
        # (a 2-byte MQTT header) cost no AT command each.
        while self._start == self._end:
            if self._readable:
                self._readable = False
                n = -1
                try:
                    n, more = await self._modem._recv(self, self._rx)
                finally:
                    if n < 0:  # the read failed: the data is still in the modem
                        self._readable = True
                self._readable = self._readable or more
                self._start = 0
                self._end = n
            elif self.closed:
                return 0
            else:
                self._event.clear()
                await self._event.wait()
        n = min(len(buf), self._end - self._start)
        buf[:n] = memoryview(self._rx)[self._start:self._start + n]
        self._start += n
        return n

    async def close(self):
        if self.held:
            self.held = False
            was_open = not self.closed
            self._wake(False)
            await self._modem._close(self, was_open)


# -- the modem -----------------------------------------------------------------------------

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
    SOCKETS = 2  # links handed out at once

    def __init__(self, channel, board, log):
        self.ch = channel
        self.log = log
        self._timing = board["modem"]  # pwrkey_on_ms, pwrkey_off_ms, boot_ms, power_off_ms
        pins = board["pins"]
        self._pwrkey = _pin(pins.get("pwrkey"))
        self._status = _pin(pins.get("status"), machine.Pin.IN)
        self._reset = _pin(pins.get("reset"))
        self._supply = _pin(pins.get("modem_power"))  # driven once power_on/off decide
        _drive(self._pwrkey, False)
        _drive(self._reset, False)
        self._sockets = [None] * self.SOCKETS  # type: list
        self._awaiting = None  # prefix of the reply URC a command waits for
        self._reply_line = None
        self._reply_event = asyncio.Event()
        self.reg_event = asyncio.Event()  # set on every +CEREG URC
        self.status = {"family": self.FAMILY, "identity": None, "signal": None,
                       "registration": None, "bearer": False}  # type: dict
        channel.on_urc("+CEREG:", self._on_cereg)
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

    # -- power -------------------------------------------------------------------------------

    def is_powered(self):
        # From the STATUS line; None when the board has none.
        return self._status[0].value() == self._status[1] if self._status else None

    async def _press(self, line, ms):
        if line is None:
            raise ModemError("power: no PWRKEY line")
        _drive(line, True)
        await asyncio.sleep_ms(ms)
        _drive(line, False)

    async def _wait_status(self, on, ms):
        # True once STATUS reads `on`, False if not within ms, None without a STATUS line.
        if self._status is None:
            return None
        t0 = time.ticks_ms()
        while self.is_powered() != on:
            if time.ticks_diff(time.ticks_ms(), t0) >= ms:
                return False
            await asyncio.sleep_ms(_POLL_MS)
        return True

    async def power_on(self):
        # Leaves the modem on and in sync. One already on (STATUS active, or without STATUS
        # answering AT) gets no PWRKEY pulse, which would switch it off.
        _drive(self._supply, True)
        if self.is_powered():
            return await self.sync()
        if self._status is None:
            try:
                return await self.sync(_PROBE_ATTEMPTS)
            except ATError as e:  # silent: off, so press PWRKEY
                self.log.info("modem", "%s: PWRKEY" % e)
        await self._press(self._pwrkey, self._timing["pwrkey_on_ms"])
        await self._boot()

    async def _boot(self):
        # After PWRKEY or RESET: STATUS, then AT, each given the board's boot time.
        boot_ms = self._timing["boot_ms"]
        if await self._wait_status(True, boot_ms) is False:
            self.log.warning("modem", "no STATUS after %d ms" % boot_ms)
        await self.sync(_SYNC_ATTEMPTS + boot_ms // _SYNC_TIMEOUT_MS)

    async def power_off(self):
        self._forget()
        if self.is_powered() is not False:
            done = None
            if self.POWER_OFF_CMD:
                try:
                    done = await self._at(self.POWER_OFF_CMD, None, _POWER_CMD_TIMEOUT_MS)
                except ATTimeout as e:  # a hung modem still obeys PWRKEY
                    self.log.info("modem", str(e))
            if done is None:
                await self._press(self._pwrkey, self._timing["pwrkey_off_ms"])
            ms = self._timing["power_off_ms"]
            off = await self._wait_status(False, ms)
            if off is None:
                await asyncio.sleep_ms(ms)
            elif not off and not self._supply:
                raise ModemError("power off: STATUS still active after %d ms" % ms)
        _drive(self._supply, False)

    async def power_cycle(self):
        try:
            await self.power_off()
        except ModemError as e:
            self.log.warning("modem", str(e))
        await self.power_on()

    async def hard_reset(self):
        # The RESET line when the board has one, else a power cycle.
        if self._reset is None:
            return await self.power_cycle()
        self._forget()
        await self._press(self._reset, self.RESET_PULSE_MS)
        await self._boot()

    async def soft_reset(self):
        await self._at(self.SOFT_RESET_CMD, "soft reset", _CFUN_TIMEOUT_MS)
        self._forget()
        await asyncio.sleep_ms(self._timing["boot_ms"])
        await self.sync()

    async def sync(self, attempts=_SYNC_ATTEMPTS):
        # "AT" until OK: after power-on, or when echo or baud drifted. Then echo off, verbose
        # errors and the family's own settings.
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

    # -- identity, signal, registration ----------------------------------------------------

    async def identity(self):
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
        # why not (denied, searching...).
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
        self.status["registration"] = best
        return best

    async def enable_registration_urcs(self):
        await self._at("AT+CEREG=2", "registration URCs")

    def _on_cereg(self, line):
        self.status["registration"] = parse_cereg(line, self.ACT_NAMES)
        self.reg_event.set()

    # -- bearer ------------------------------------------------------------------------------

    async def set_apn(self, apn):
        # Context 1 gets the APN; other contexts with another APN are cleared, so a stale one
        # left by a previous SIM or firmware cannot be what the network attaches with. An
        # empty APN asks for the network's default (LTE assigns one at attach).
        if len(apn) > _APN_MAX or '"' in apn or "," in apn:
            raise ModemError("apn: bad APN %r" % (apn,))
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
        # Brings the data bearer up; an SMS-only or denied network is a clear error.
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
            raise ModemError("attach: " + why, reg["cause"])
        await self._activate()
        self.status["bearer"] = True

    async def detach(self):
        self._forget()
        await self._deactivate()

    async def radio(self, on):
        # AT+CFUN=1, or flight mode (AT+CFUN=4).
        if not on:
            self._forget()
        await self._at("AT+CFUN=1" if on else "AT+CFUN=4", "radio", _CFUN_TIMEOUT_MS)

    def _forget(self):
        # The bearer and every link are gone (network loss, reset, power off).
        self.status["bearer"] = False
        for s in self._sockets:
            if s is not None and s.held:
                s._wake(False)

    # -- sockets -----------------------------------------------------------------------------

    async def open_socket(self, host, port, timeout_ms=_OPEN_TIMEOUT_MS):
        if not host or '"' in host or "," in host or not 0 < port < 65536:
            raise ModemError("open: bad address %r:%r" % (host, port))
        for i in range(self.SOCKETS):
            s = self._sockets[i]
            if s is None:
                s = self._sockets[i] = Socket(self, i, self.RX_BUFFER)
            if not s.held:
                # Held before the open command: data may be announced right after its result.
                s._start = s._end = 0
                s._readable = False
                s._event.clear()
                s.held = True
                opened = False
                try:
                    await self._open(s, host, port, timeout_ms)
                    opened = True
                finally:
                    s.held = opened
                s.closed = False
                return s
        raise ModemError("open: all %d sockets in use" % self.SOCKETS)

    async def _family(self, *args):
        raise NotImplementedError

    # The family's part (see the top of this module).
    _lte_report = _config_pdp = _activate = _deactivate = _open = _family

    def _link_event(self, field, data):
        # A URC naming a link: data arrived (data=True) or it closed.
        link = num(field)
        s = self._sockets[link] if link is not None and 0 <= link < self.SOCKETS else None
        if s is not None and s.held:
            s._wake(data)

    async def _recv(self, sock, buf):
        # The families whose read command answers "<prefix> <n>" and then n raw bytes
        # (READ_DATA says where the length is and where the data starts).
        want = min(len(buf), self.MAX_READ)
        prefix, terminator, field = self.READ_DATA
        lines = await self._at(self.READ_COMMAND % (sock.link, want), "read",
                               data=(prefix, terminator, buf, field))
        if find(lines, prefix) is None:
            raise bad_reply("read", lines)
        n = self.ch.data_length()
        return n, n == want

    async def _close(self, sock, was_open):
        # A close the remote end may have beaten us to: then a refusal is expected.
        try:
            await self._at(self.CLOSE_COMMAND % sock.link, "close %d" % sock.link,
                           self.CLOSE_TIMEOUT_MS)
        except ModemError as e:
            if was_open:
                raise
            self.log.debug("modem", str(e))
