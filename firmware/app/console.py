# The technician's console on the REPL UART, beside the application's other tasks: counting,
# sampling and the uplink go on while it answers (docs/console-device.md).
#
# app.main reads sys.stdin through asyncio, a byte at a time, as micropython-lib's aiorepl does:
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
# request with " confirm=<token>" appended performs it (app.console_session).
#
# Between requests only app.main's console task (its stream reader and a byte) stays in the
# heap: this module, with the line buffer and the service mode's state, is loaded at a line's
# first byte and let go once a line is answered outside service mode. The line's handling and
# the commands (app.console_session, app.console_cmds, and for some requests
# app.console_status or app.console_change) are loaded for each request and let go after
# it. A request the heap cannot serve now is answered "out of memory now: ask again"
# (docs/console-device.md, Heap: a reserve held for the console from boot starved the
# uplink's commands, so there is none).
import sys

from micropython import const

_LINE_MAX = const(128)  # the line buffer, made once for each time the console is loaded
_AT = const(0x40)  # "@": a program's request, not echoed
_CR = const(0x0D)
_LF = const(0x0A)


class Console:
    # status, log: the device's status and log (the commands reach the other running parts
    # through app.parts, as a downlink command does). app.main's console task reads the bytes
    # and hands each to take(); it lets this console go once idle() (docs/console-device.md).
    def __init__(self, status, log):
        self.status = status
        self.log = log
        self._line = bytearray(_LINE_MAX)
        self._n = 0
        self._overlong = False
        self.technician = None  # service mode: the technician's name
        self.pending = None  # (token, request) of the change waiting for its confirmation

    def idle(self):
        # No line under way and no service mode: nothing here that the next line needs.
        return not (self._n or self._overlong or self.technician or self.pending)

    async def take(self, c, last):
        # One byte typed; last: the byte before it ("\r\n" ends one line, not two).
        if c == _CR or c == _LF:
            if not (c == _LF and last == _CR):
                await self._end_line()
        elif c == 0x08 or c == 0x7F:
            if self._n and not self._overlong:
                self._n -= 1
                if self._line[0] != _AT:
                    sys.stdout.write("\b \b")
        elif c >= 0x20:
            if self._n >= _LINE_MAX - 1:
                self._overlong = True
                return
            self._line[self._n] = c
            self._n += 1
            if self._line[0] != _AT:  # a person's line is echoed, a program's is not
                sys.stdout.write(chr(c) if c < 0x80 else "?")

    async def _end_line(self):
        line = memoryview(self._line)[:self._n]
        overlong, self._overlong, self._n = self._overlong, False, 0
        import gc

        from app import unload

        respond = None
        try:
            from app.console_session import respond

            await respond(self, line, overlong)
        except MemoryError:
            # Not even the commands' module fits now (a TLS handshake under way, say): the
            # request is refused as such, the console stays.
            self._out_of_memory(line)
        finally:
            respond = None
            unload("console_session", "console_cmds", "console_status", "console_change",
                   "health", "diagnoses", "selftest", "config", "uplink.commands")
            gc.collect()

    def _out_of_memory(self, line):
        if len(line) and line[0] == _AT:
            i = 1
            while i < len(line) and line[i] != 0x20:
                i += 1
            sys.stdout.write("@%s " % bytes(line[1:i]).decode())
            sys.stdout.write('{"ok": false, "error": "out of memory now: ask again"}\n')
        else:
            sys.stdout.write("\nerror: out of memory now: ask again\n")
