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
# The parts are the running ones (app.parts), as a downlink command reaches them. Here: the
# dispatch and the reads that need no other module; the status is app.console_status, the
# commands that can change something app.console_change, each loaded only for its requests.
from app import parts
from app.console_reads import counters, sensors
from micropython import const

_LOG_LINES = const(20)  # log lines shown by default
HELP = (
    "status", "signal", "log [N]", "counters", "sensors", "selftest", "config get [KEY]",
    "config set KEY VALUE", "at CMD", "simswap", "counter adjust NAME VALUE REASON",
    "service on NAME", "service off", "reboot", "help",
)


async def plan(con, words):
    name = words[0]
    if name == "help":
        return "result", {"commands": list(HELP), "service": con.technician}
    if name == "status":
        from app.console_status import status

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
        from app.health import current
        from app.selftest import run

        return "result", await run(current())
    if name in ("config", "at", "simswap", "counter", "reboot"):
        from app import console_change as change

        if name == "config":
            return change.config(words)
        if name == "at":
            return change.at(" ".join(words[1:]))
        if name == "simswap":
            return await change.simswap(con)
        if name == "counter":
            return change.counter(con, words)
        if len(words) == 1:
            return "change", "reboot", change.reboot
    return "error", "unknown command %r (help lists them)" % name


# -- reads ---------------------------------------------------------------------------------

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
