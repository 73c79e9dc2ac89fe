# One line of the console (app.console), loaded for it and let go after it: a program's
# request ("@<id> ...") gets one JSON line, a person's readable lines and the prompt. Changes
# wait for service mode and a confirmation of the very same request; each one performed is
# logged and kept for upstream with the technician's name (app.health's service log). The
# commands themselves are app.console_cmds.
import json
import sys

from app.console_cmds import plan
from micropython import const

PROMPT = "musket> "
_ID_MAX = const(16)  # request ids: letters, digits, _ and -
_NAME_MAX = const(32)  # a technician's name


def _name_ok(text, most, extra):
    if not 0 < len(text) <= most:
        return False
    for ch in text:
        if not (ch.isalpha() or ch.isdigit() or ch in extra):
            return False
    return True


async def respond(con, line, overlong):
    try:
        text = bytes(line).decode()
    except UnicodeError:
        text = ""
    rid = None
    if text.startswith("@"):
        rid, _, text = text[1:].partition(" ")
        if not _name_ok(rid, _ID_MAX, "_-"):
            rid = "?"
    else:
        sys.stdout.write("\n")
    if overlong:
        reply = {"ok": False, "error": "line too long: at most 127 characters"}
    elif not text.strip():
        reply = None if rid is None else {"ok": False, "error": "empty request"}
    else:
        try:
            reply = await handle(con, text.strip())
        except MemoryError as e:
            reply = {"ok": False, "error": "out of memory now (%s): ask again" % e}
    if rid is None:
        if reply is not None:
            render(reply)
        sys.stdout.write(PROMPT)
        return
    # One line, written piece by piece: no large string is made.
    sys.stdout.write("@%s " % rid)
    try:
        _write_json(reply)
    except MemoryError:
        sys.stdout.write("\n@%s " % rid)
        json.dump({"ok": False, "error": "out of memory now: ask again"}, sys.stdout)
    sys.stdout.write("\n")


def _items(v):
    # (key, value) pairs of a map, or of a generator of pairs (app.console_cmds); None for
    # anything else.
    if isinstance(v, dict):
        return ((k, v[k]) for k in v)
    if hasattr(v, "send"):
        return v
    return None


def _write_json(v):
    write = sys.stdout.write
    items = _items(v)
    if items is None:
        json.dump(v, sys.stdout)
        return
    write("{")
    first = True
    for k, x in items:
        if not first:
            write(", ")
        first = False
        json.dump(str(k), sys.stdout)
        write(": ")
        _write_json(x)
    write("}")


async def handle(con, text):
    # -> the reply to one request (without its id).
    words = text.split()
    token = None
    if words[-1].startswith("confirm="):
        token = words.pop()[8:]
        text = " ".join(words)
        if not words:
            return {"ok": False, "error": "confirm= of what?"}
    if words[0] == "service":
        return _service(con, words)
    try:
        step = await plan(con, words)
        if step[0] == "result":
            return {"ok": True, "result": step[1]}
        if step[0] == "now":
            return {"ok": True, "result": await step[1]()}
        if step[0] == "error":
            return {"ok": False, "error": step[1]}
        return await _change(con, text, token, step[1], step[2])
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - a failed command is its answer, never a crash
        con.log.exception("console", "command failed", e)
        return {"ok": False, "error": "failed: %s: %s" % (type(e).__name__, e)}


async def _change(con, text, token, summary, perform):
    # A change waits for service mode and a confirmation of this very request.
    if con.technician is None:
        return {"ok": False, "error": "refused: a change needs service mode "
                                      "(service on <your name>)"}
    pending, con.pending = con.pending, None
    if token is None:
        import random

        token = "%06x" % random.getrandbits(24)
        con.pending = (token, text)
        return {"ok": False, "confirm": token, "summary": summary}
    if pending is None or pending != (token, text):
        return {"ok": False, "error": "refused: confirmation %s does not match a pending "
                                      "request; ask again" % token}
    result = await perform()
    who = con.technician
    con.log.info("console", "%s: %s" % (who, summary))
    from app.health import current

    current().service(who, summary)
    return {"ok": True, "result": result}


def _service(con, words):
    if len(words) >= 3 and words[1] == "on":
        name = " ".join(words[2:])
        if not _name_ok(name, _NAME_MAX, " ._-"):
            return {"ok": False, "error": "service on: a name of 1-%d letters, digits, "
                                          "spaces, . _ -" % _NAME_MAX}
        con.technician = name
        con.pending = None
        con.log.info("console", "service mode on: %s" % name)
        return {"ok": True, "result": {"service": name}}
    if len(words) == 2 and words[1] == "off":
        if con.technician is not None:
            con.log.info("console", "service mode off: %s" % con.technician)
        con.technician = None
        con.pending = None
        return {"ok": True, "result": {"service": None}}
    return {"ok": False, "error": "usage: service on <your name> | service off"}


# -- for people ----------------------------------------------------------------------------

def render(reply):
    # A reply as readable lines: nested maps indented, lists one item a line.
    write = sys.stdout.write
    if reply.get("confirm"):
        write("confirm: %s\nrepeat the command with: confirm=%s\n"
              % (reply["summary"], reply["confirm"]))
    elif not reply["ok"]:
        write("error: %s\n" % reply["error"])
    else:
        _lines(reply["result"], 0)


def _lines(v, depth):
    write = sys.stdout.write
    pad = "  " * depth
    items = _items(v)
    if items is not None:
        for k, x in items:
            if hasattr(x, "send"):
                write("%s%s:\n" % (pad, k))
                _lines(x, depth + 1)
            elif isinstance(x, (dict, list)) and x:
                write("%s%s:\n" % (pad, k))
                _lines(x, depth + 1)
            else:
                write("%s%s: %s\n" % (pad, k, _text(x)))
    elif isinstance(v, list):
        for x in v:
            if isinstance(x, dict) or hasattr(x, "send"):
                write("%s-\n" % pad)
                _lines(x, depth + 1)
            else:
                write("%s- %s\n" % (pad, _text(x)))
    else:
        write("%s%s\n" % (pad, _text(v)))


def _text(x):
    if x is None:
        return "-"
    if isinstance(x, (list, tuple)):
        return ", ".join(_text(i) for i in x) if x else "-"
    return str(x)
