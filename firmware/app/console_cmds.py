# The console's commands (app.console_session), loaded for one request and let go after it.
#
# plan(console, words) -> one of
#   ("result", value)              answered at once (a read); a map in the value may be a
#                                  generator of (key, value) pairs, made as the answer is
#                                  written, so that only one section is in the heap at once
#   ("now", perform)               a read that awaits the modem: perform() gives its result
#   ("error", why)                 refused: bad input, unknown command
#   ("change", summary, perform)   a change: it needs service mode and a confirmation of
#                                  this very request, then perform() gives its result
# The parts are the running ones (app.parts), as a downlink command reaches them; a config
# change and a counter adjustment go through the same checks and the same path as the MQTT
# commands (app.uplink.commands).
from app import parts
from micropython import const

_LOG_LINES = const(20)  # log lines shown by default
_AT_MAX = const(64)
_AT_TIMEOUT_MS = const(10000)  # an AT command from the console: a read answers at once
# AT commands that only read, besides any "...?" (read) and "...=?" (test) form.
_AT_READS = ("AT", "ATI", "AT+CSQ", "AT+CCID", "AT+QCCID", "AT+CICCID", "AT+CGSN", "AT+CIMI",
             "AT+CGMR", "AT+CGMI", "AT+CGMM", "AT+CEER", "AT+CPSI?", "AT+QNWINFO",
             "AT+QCSQ", "AT+CENG?", "AT+CPSI")
HELP = (
    "status", "signal", "log [N]", "counters", "sensors", "selftest", "config get [KEY]",
    "config set KEY VALUE", "at CMD", "simswap", "counter adjust NAME VALUE REASON",
    "service on NAME", "service off", "reboot", "help",
)


def _health():
    # The health record (app.health), for this request: app.console lets the module go.
    from app.health import Health

    return Health(parts["status"], parts["log"])


async def plan(con, words):
    name = words[0]
    if name == "help":
        return "result", {"commands": list(HELP), "service": con.technician}
    if name == "status":
        return "result", status()
    if name == "signal":
        return await signal()
    if name == "log":
        return log(words)
    if name == "counters":
        return counters()
    if name == "sensors":
        return sensors()
    if name == "selftest":
        from app.selftest import run

        return "result", await run(_health())
    if name == "config":
        return config(words)
    if name == "at":
        return at(" ".join(words[1:]))
    if name == "simswap":
        return await simswap(con)
    if name == "counter":
        return counter(con, words)
    if name == "reboot" and len(words) == 1:
        return "change", "reboot", reboot
    return "error", "unknown command %r (help lists them)" % name


# -- reads ---------------------------------------------------------------------------------

def status():
    # The sections as pairs, each made as the answer reaches it and garbage after: no map of
    # the whole status is ever in the heap. The modules they need are loaded first, so that
    # a heap too short for them fails the request before its answer has begun.
    from app.diagnoses import explain

    health = _health()
    diagnosis = explain(health.codes())
    return _status(health, diagnosis)


def _status(health, diagnosis):
    import gc

    gc.collect()  # heap free as live data leaves it, with the console's modules loaded
    st = parts["status"]
    sections = st.sections
    identity = sections.get("identity") or {}
    uplink = sections.get("uplink")
    yield "identity", _pairs(("device_id", identity.get("device_id")),
                             ("firmware", identity.get("firmware")),
                             ("bundle", identity.get("bundle")), ("board", st.board))
    yield "uptime_s", st.uptime_s()
    yield "reset_cause", st.reset_cause
    yield "boot_count", st.boot_count
    yield "heap", _pairs(("free", gc.mem_free()), ("used", gc.mem_alloc()))
    yield "modem", _modem(sections.get("modem"))
    yield "uplink", uplink
    yield "last_telemetry_t", uplink.get("last_t") if uplink else None
    yield "counters", counters()[1]
    yield "sensors", sensors()[1]
    yield "ota", sections.get("ota")
    log = parts.get("log")
    yield "log", _pairs(("errors", log.errors), ("warnings", log.warnings))
    yield "health", health.summary()
    yield "diagnosis", diagnosis


def _pairs(*pairs):
    yield from pairs


def _modem(modem):
    if not modem:
        return None
    return _modem_pairs(modem)


def _modem_pairs(modem):
    ident = modem.get("identity") or {}
    signal = modem.get("signal") or {}
    yield "state", modem.get("state")
    yield "iccid", ident.get("iccid")
    yield "imei", ident.get("imei")
    yield "sim", modem.get("sim")
    yield "registration", modem.get("registration")
    for key in ("operator", "act", "band", "rsrp", "rsrq", "sinr", "rssi_dbm"):
        yield key, signal.get(key)
    yield "attach_history", modem.get("history")
    for key in ("escalations", "last_error", "ceer"):
        yield key, modem.get(key)


async def signal():
    link = parts.get("modem")
    if link is None:
        return "error", "this device has no modem"
    modem = link.modem
    s = dict(await modem.signal())
    s["registration"] = await modem.registration()
    s["state"] = link.status.get("state")
    return "result", s


def log(words):
    from app.log import format_entry

    n = _LOG_LINES
    if len(words) > 1:
        try:
            n = int(words[1])
        except ValueError:
            return "error", "log: N must be a number of lines"
    entries = parts["log"].entries()
    return "result", [format_entry(e) for e in entries[-n:]] if n > 0 else []


def counters():
    c = parts.get("counters")
    if c is None:
        return "result", None
    out = dict(c.status())
    # Thresholds as app.counter keeps them (in the counter's units of record).
    out["rules"] = [{"counter": r[0], "every": r[1], "at": r[2], "action": r[3]}
                    for r in c.rules]
    out["marks"] = c.marks
    return "result", out


def sensors():
    s = parts.get("sensors")
    if s is None:
        return "result", None
    s.update_section()
    return "result", {"readings": s.section, "faults": s.faults()}


# -- config --------------------------------------------------------------------------------

def config(words):
    from app import config as config_mod

    current = config_mod.load()[0]
    if len(words) == 2 and words[1] == "get":
        return "result", current
    if len(words) == 3 and words[1] == "get":
        key = words[2]
        if key not in config_mod.SCHEMA:
            return "error", "config: %r: unknown key" % key
        return "result", {"key": key, "value": current[key],
                          "default": config_mod.DEFAULTS[key],
                          "applies": "now" if config_mod.owner(key) else "after reboot"}
    if len(words) >= 4 and words[1] == "set":
        key = words[2]
        spec = config_mod.SCHEMA.get(key)
        if spec is None:
            return "error", "config: %r: unknown key" % key
        raw = " ".join(words[3:])
        if spec[1] is int:
            try:
                value = int(raw)
            except ValueError:
                return "error", "config: %s: expected an integer, got %r" % (key, raw)
        else:
            value = raw
        from app.uplink import commands

        why = commands.check_config({key: value})
        if why:
            return "error", why
        old = current[key]

        async def perform():
            from app import unload
            from app.uplink import commands

            try:
                result = commands.apply_config({key: value})
            finally:
                del commands
                unload("uplink.commands", "config")
            result["old"] = {key: old}
            return result

        return "change", "config %s: %r -> %r" % (key, old, value), perform
    return "error", "usage: config get [KEY] | config set KEY VALUE"


# -- AT passthrough ------------------------------------------------------------------------

def _at_reads(cmd):
    up = cmd.upper()
    if ";" in up:
        return False  # several commands in one line: each would need its own look
    return up.endswith("?") or up in _AT_READS


def at(cmd):
    link = parts.get("modem")
    if link is None:
        return "error", "this device has no modem"
    if not cmd.upper().startswith("AT") or len(cmd) > _AT_MAX:
        return "error", "at: a command starting with AT, at most %d characters" % _AT_MAX
    for ch in cmd:
        if not " " <= ch <= "~":
            return "error", "at: printable ASCII only"
    channel = link.modem.ch
    # The reply's lines look like URCs ("+CEREG: ..."): name the prefix the command answers.
    name = cmd[2:].split("=")[0].split("?")[0]
    expect = name if name.startswith("+") else None

    async def perform():
        from app.modem.at import ATError

        try:
            return {"command": cmd,
                    "reply": await channel.command(cmd, _AT_TIMEOUT_MS, expect=expect)}
        except ATError as e:
            return {"command": cmd, "error": str(e)}

    if _at_reads(cmd):
        return "now", perform
    return "change", "AT command %s (changes the modem, radio or SIM)" % cmd, perform


# -- SIM swap, counter, reboot -------------------------------------------------------------

async def simswap(con):
    link = parts.get("modem")
    if link is None:
        return "error", "this device has no modem"
    health = _health()
    # The SIM the device is bound to: recorded at the first status message, else the one the
    # modem read at its bring-up; a device that never read one binds to the SIM in it now.
    before = (link.status.get("identity") or {}).get("iccid")
    ident = await link.modem.identity()
    new = ident["iccid"]
    old = health.iccid() or before
    if old is None or old == new:
        health.bind(new)
        return "result", {"changed": False, "iccid": new}

    async def perform():
        health.sim_swap(old, new, con.technician)
        return {"changed": True, "old_iccid": old, "new_iccid": new,
                "imei": ident.get("imei")}

    return "change", "SIM swap: ICCID %s -> %s" % (old, new), perform


def counter(con, words):
    # counter adjust NAME VALUE REASON...
    c = parts.get("counters")
    if len(words) < 5 or words[1] != "adjust":
        return "error", "usage: counter adjust NAME VALUE REASON"
    name, raw, reason = words[2], words[3], " ".join(words[4:])
    try:
        value = int(raw)
    except ValueError:
        return "error", "counter: value must be an integer, got %r" % raw
    from app.uplink import commands

    why = commands.check_counter(c, name, value, reason)
    if why:
        return "error", why
    old = c.snapshot().get(name)

    async def perform():
        seq = c.adjust(name, value, reason, "console:" + con.technician)
        return {"seq": seq, "name": name, "old": old, "value": value}

    return "change", "counter %s: %s -> %d (%s)" % (name, old, value, reason), perform


async def reboot():
    import asyncio

    import machine

    _health().rebooting("console")
    # The reply goes out before the reset: the UART drains within this.
    asyncio.create_task(_reset_soon(machine))
    return "rebooting"


async def _reset_soon(machine):
    import asyncio

    await asyncio.sleep_ms(200)
    machine.reset()


