# The technician's console on the REPL UART, beside the application's other tasks: counting,
# sampling and the uplink go on while it answers (docs/console-device.md).
#
# It reads sys.stdin through asyncio, a byte at a time, as micropython-lib's aiorepl does:
# the UART driver hands over what was typed and keeps Ctrl-C for itself, so Ctrl-C still
# stops the application into the REPL (mpremote, ampy) and app.main says so.
#
# Protocol (one line per request, at most _LINE_MAX - 1 characters):
#   status                  a person: readable lines, then the prompt "musket> "
#   @7 status               a program: exactly one line back, "@7 {json}", where json is
#                           {"ok": true, "result": ...} or {"ok": false, "error": "..."}
# Changes (config set, a writing AT command, a SIM swap's record, counter adjust, reboot) are
# refused outside service mode ("service on <technician>"), and each needs a confirmation:
# the first request answers {"ok": false, "confirm": "<token>", "summary": "..."}, the same
# request with " confirm=<token>" appended performs it. Every change performed is logged and
# kept for upstream with the technician's name (app.health's service log).
#
# Only the line buffer and this small module stay in the heap; the commands' module
# (app.console_cmds) is loaded for each request and let go after it.
import asyncio
import json
import sys

from micropython import const

_LINE_MAX = const(128)  # the line buffer, made once
_ID_MAX = const(16)  # request ids: letters, digits, _ and -
_NAME_MAX = const(32)  # a technician's name
PROMPT = "musket> "
_BACKSPACE = (0x08, 0x7F)
_CR = const(0x0D)
_LF = const(0x0A)


def _name_ok(text, most):
    if not 0 < len(text) <= most:
        return False
    for ch in text:
        if not (ch.isalpha() or ch.isdigit() or ch in " ._-"):
            return False
    return True


class Console:
    # status, log: the device's status and log (the commands reach the other running parts
    # through app.parts, as a downlink command does); stream: the console's input, sys.stdin
    # unless a test gives another.
    def __init__(self, status, log, stream=None):
        self.status = status
        self.log = log
        self._stream = stream
        self._line = bytearray(_LINE_MAX)
        self._byte = bytearray(1)
        self._n = 0
        self._overlong = False
        self._last = 0  # the byte before this one: "\r\n" ends one line, not two
        self.technician = None  # service mode: the technician's name
        self._confirm = None  # (token, request) of the change waiting for its confirmation

    async def run(self):
        reader = asyncio.StreamReader(self._stream or sys.stdin)
        buf = self._byte
        while True:
            if not await reader.readinto(buf):
                return  # the console's other end is gone (only a simulated one can go)
            await self._take(buf[0])

    async def _take(self, c):
        last, self._last = self._last, c
        if c == _CR or c == _LF:
            if c == _LF and last == _CR:
                return
            await self._end_line()
        elif c in _BACKSPACE:
            if self._n and not self._overlong:
                self._n -= 1
                if self._line[0] != 0x40:
                    sys.stdout.write("\b \b")
        elif c >= 0x20:
            if self._n >= _LINE_MAX - 1:
                self._overlong = True
                return
            self._line[self._n] = c
            self._n += 1
            if self._line[0] != 0x40:  # a person's line is echoed, a program's ("@") is not
                sys.stdout.write(chr(c) if c < 0x80 else "?")

    async def _end_line(self):
        try:
            text = bytes(self._line[:self._n]).decode()
        except UnicodeError:
            text = ""
        overlong, self._overlong, self._n = self._overlong, False, 0
        rid = None
        if text.startswith("@"):
            rid, _, text = text[1:].partition(" ")
            if not _name_ok(rid, _ID_MAX) or " " in rid:
                rid = "?"
        else:
            sys.stdout.write("\n")
        if overlong:
            reply = {"ok": False, "error": "line too long: at most %d characters"
                     % (_LINE_MAX - 1)}
        elif not text.strip():
            reply = None
        else:
            reply = await self.request(text.strip())
        self.answer(rid, reply)

    def answer(self, rid, reply):
        # A program's reply: one line, written piece by piece (json.dump to the stream) so
        # that no large string is made. A person's: readable lines, then the prompt.
        if rid is not None:
            sys.stdout.write("@%s " % rid)
            json.dump(reply if reply is not None else {"ok": False, "error": "empty request"},
                      sys.stdout)
            sys.stdout.write("\n")
            return
        if reply is not None:
            from app import unload
            from app.console_cmds import render

            try:
                render(reply)
            finally:
                del render
                unload("console_cmds")
        sys.stdout.write(PROMPT)

    async def request(self, text):
        # -> the reply to one request (without its id).
        words = text.split()
        token = None
        if words[-1].startswith("confirm="):
            token = words.pop()[8:]
            text = " ".join(words)
        if words[0] == "service":
            return self._service(words)
        from app import unload
        from app.console_cmds import plan

        try:
            try:
                step = await plan(self, words)
            finally:
                del plan
            if step[0] == "result":
                return {"ok": True, "result": step[1]}
            if step[0] == "now":  # a read that needs the modem: no confirmation
                return {"ok": True, "result": await step[1]()}
            if step[0] == "error":
                return {"ok": False, "error": step[1]}
            return await self._change(text, token, step[1], step[2])
        except Exception as e:  # noqa: BLE001 - a failed command is its answer, never a crash
            self.log.exception("console", "command failed", e)
            return {"ok": False, "error": "failed: %s: %s" % (type(e).__name__, e)}
        finally:
            unload("console_cmds")

    async def _change(self, text, token, summary, perform):
        # A change waits for service mode and a confirmation of this very request.
        if self.technician is None:
            return {"ok": False, "error": "refused: a change needs service mode "
                                          "(service on <your name>)"}
        pending, self._confirm = self._confirm, None
        if token is None:
            import random

            token = "%06x" % random.getrandbits(24)
            self._confirm = (token, text)
            return {"ok": False, "confirm": token, "summary": summary}
        if pending is None or pending != (token, text):
            return {"ok": False, "error": "refused: confirmation %s does not match a "
                                          "pending request; ask again" % token}
        result = await perform()
        who = self.technician
        self.log.info("console", "%s: %s" % (who, summary))
        from app import parts

        health = parts.get("health")
        if health is not None:
            health.service(who, summary)
        return {"ok": True, "result": result}

    def _service(self, words):
        if len(words) >= 3 and words[1] == "on":
            name = " ".join(words[2:])
            if not _name_ok(name, _NAME_MAX):
                return {"ok": False, "error": "service on: a name of 1-%d letters, digits, "
                                              "spaces, . _ -" % _NAME_MAX}
            self.technician = name
            self._confirm = None
            self.log.info("console", "service mode on: %s" % name)
            return {"ok": True, "result": {"service": name}}
        if len(words) == 2 and words[1] == "off":
            if self.technician is not None:
                self.log.info("console", "service mode off: %s" % self.technician)
            self.technician = None
            self._confirm = None
            return {"ok": True, "result": {"service": None}}
        return {"ok": False, "error": "usage: service on <your name> | service off"}
