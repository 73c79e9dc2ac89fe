# The console's commands that can change something (app.console_cmds' plan), loaded for one
# of their requests and let go after it: config get/set, AT passthrough, SIM swap, counter
# adjust, reboot. A config change and a counter adjustment go through the same checks and the
# same path as the MQTT commands (app.uplink.commands).
from app import parts
from micropython import const

_AT_MAX = const(64)
_AT_TIMEOUT_MS = const(10000)  # an AT command from the console: a read answers at once
# AT commands that only read, besides any "...?" (read) and "...=?" (test) form.
_AT_READS = ("AT", "ATI", "AT+CSQ", "AT+CCID", "AT+QCCID", "AT+CICCID", "AT+CGSN", "AT+CIMI",
             "AT+CGMR", "AT+CGMI", "AT+CGMM", "AT+CEER", "AT+CPSI?", "AT+QNWINFO",
             "AT+QCSQ", "AT+CENG?", "AT+CPSI")


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
    from app.health import current

    health = current()
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

    from app.health import current

    current().rebooting("console")
    # The reply goes out before the reset: the UART drains within this.
    asyncio.create_task(_reset_soon(machine))
    return "rebooting"


async def _reset_soon(machine):
    import asyncio

    await asyncio.sleep_ms(200)
    machine.reset()
