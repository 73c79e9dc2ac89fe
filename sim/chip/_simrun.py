# What the ESP32 port does after its filesystem is mounted, for the virtual device: run
# boot.py, then main.py, then the REPL on the console (UART0), including the raw REPL and
# raw-paste mode that mpremote speaks. Interpreter differences come in as three callables.
import _simcore
import _simflash

MODE_APP = "app"  # boot.py, main.py, then the REPL: a power-on
MODE_RAW = "raw"  # boot.py, then the raw REPL: a soft reset asked for from the raw REPL
MODE_SCRIPT = "script"  # run one host-supplied script instead of main.py, then stop

_CTRL_A = 0x01
_CTRL_B = 0x02
_CTRL_C = 0x03
_CTRL_D = 0x04
_CTRL_E = 0x05
_BACKSPACE = (0x08, 0x7F)
_RAW_PASTE_WINDOW = 256  # bytes the host may send before waiting for a flow-control 0x01
_RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
EXIT_DONE = "done"


class Runner:
    def __init__(self, run_source, file_exists, print_exception):
        # run_source(source, filename, globals, mode) compiles and runs in the device's
        # interpreter ("exec" or "single"); file_exists(path) looks on the device filesystem;
        # print_exception(exc) writes a traceback to the console.
        self.run_source = run_source
        self.file_exists = file_exists
        self.print_exception = print_exception
        self.globals = {"__name__": "__main__"}
        self.banner = "MicroPython v{} on 2026-01-01; {} (virtual) with {}\r\n".format(
            _simcore.settings.get("micropython_version", "1.28.0"),
            _simcore.settings.get("board", "ESP32 module"),
            _simcore.settings.get("chip", "ESP32").upper(),
        )

    # -- the whole life of one boot ------------------------------------------------------

    def boot(self, script_source=None):
        mode = _simcore.settings.get("mode", MODE_APP)
        try:
            if mode == MODE_SCRIPT:
                self._run_program(script_source, "script.py")
                report_exit(EXIT_DONE)
                return
            self._run_file("boot.py")
            if mode == MODE_APP:
                self._run_file("main.py")
                if _simcore.console_attached:
                    self._write(self.banner.encode() + b'Type "help()" for more information.\r\n')
            self.repl(raw=mode == MODE_RAW)
        except _simcore.SimExit as e:
            report_exit(e.reason, e.detail)

    def _run_file(self, name):
        if not self.file_exists(name):
            return
        with open(name) as f:
            source = f.read()
        self._run_program(source, name)

    def _run_program(self, source, name):
        try:
            self.run_source(source, name, self.globals, "exec")
        except _simcore.SimExit:
            raise
        except KeyboardInterrupt as e:
            self.print_exception(e)
        except BaseException as e:  # noqa: BLE001 - an application crash is reported, as on a device
            self.print_exception(e)
            _simcore.report("crash", file=name, error=repr(e))

    # -- console I/O -----------------------------------------------------------------------

    def _write(self, data):
        _simcore.console_write(data)

    def _getc(self):
        while not _simcore.console_pending:
            data = _simcore.console_read_available()
            if data:
                _simcore.console_pending.extend(data)
            else:
                _simcore.wait_console()
        c = _simcore.console_pending[0]
        _simcore.console_pending[:] = _simcore.console_pending[1:]
        return c

    # -- REPL ------------------------------------------------------------------------------

    def repl(self, raw=False):
        while True:
            if raw:
                raw = self._raw_repl()
            else:
                raw = self._friendly_repl()

    def _soft_reset(self, raw):
        # The next boot skips main.py when the reset was asked for from the raw REPL.
        self._write(b"MPY: soft reboot\r\n")
        raise _simcore.SoftReset(MODE_RAW if raw else MODE_APP)

    def _friendly_repl(self):
        # Returns True when the host asks for the raw REPL.
        line = bytearray()
        lines = []
        self._write(b">>> ")
        while True:
            c = self._getc()
            if c == _CTRL_A:
                self._write(b"\r\n")
                return True
            if c == _CTRL_B:
                self._write(b"\r\n" + self.banner.encode() + b">>> ")
                line = bytearray()
            elif c == _CTRL_C:
                self._write(b"\r\nKeyboardInterrupt\r\n>>> ")
                line = bytearray()
                lines = []
            elif c == _CTRL_D and not line and not lines:
                self._write(b"\r\n")
                self._soft_reset(False)
            elif c in _BACKSPACE:
                if line:
                    line = line[:-1]
                    self._write(b"\x08 \x08")
            elif c == 0x0D:
                self._write(b"\r\n")
                text = line.decode()
                line = bytearray()
                if lines or text.rstrip().endswith(":"):
                    if text.strip():
                        lines.append(text)
                        self._write(b"... ")
                        continue
                    text = "\n".join(lines) + "\n"
                    lines = []
                if text.strip():
                    self._run_interactive(text)
                self._write(b">>> ")
            elif c >= 0x20:
                line.append(c)
                self._write(bytes([c]))

    def _run_interactive(self, text):
        try:
            self.run_source(text, "<stdin>", self.globals, "single")
        except _simcore.SimExit:
            raise
        except BaseException as e:  # noqa: BLE001 - the REPL reports and carries on
            self.print_exception(e)

    def _raw_repl(self):
        # Returns False when the host leaves the raw REPL (Ctrl-B).
        self._write(_RAW_PROMPT)
        while True:
            code = bytearray()
            while True:
                c = self._getc()
                if c == _CTRL_A:
                    code = bytearray()
                    self._write(b"\r\n" + _RAW_PROMPT)
                elif c == _CTRL_B:
                    self._write(b"\r\n")
                    return False
                elif c == _CTRL_C:
                    code = bytearray()
                elif c == _CTRL_E and not code:
                    code = self._raw_paste()
                    if code is not None:
                        break
                    code = bytearray()
                elif c == _CTRL_D:
                    self._write(b"OK")
                    if not code:
                        self._write(b"\r\n")
                        self._soft_reset(True)
                    break
                else:
                    code.append(c)
            self._raw_exec(bytes(code))
            self._write(b">")

    def _raw_paste(self):
        # Raw-paste mode: the host streams code under a flow-control window (0x01 = send
        # another window); 0x04 ends it. Returns None if the request was not "A\x01".
        if self._getc() != ord("A") or self._getc() != _CTRL_A:
            return None
        self._write(b"R\x01" + bytes([_RAW_PASTE_WINDOW & 0xFF, _RAW_PASTE_WINDOW >> 8]))
        code = bytearray()
        received = 0
        while True:
            c = self._getc()
            if c == _CTRL_D:
                self._write(b"\x04")
                return code
            code.append(c)
            received += 1
            if received == _RAW_PASTE_WINDOW:
                received = 0
                self._write(b"\x01")

    def _raw_exec(self, code):
        try:
            self.run_source(code.decode(), "<stdin>", self.globals, "exec")
        except _simcore.SimExit:
            raise
        except BaseException as e:  # noqa: BLE001 - the error goes back to the host
            self._write(b"\x04")
            self.print_exception(e)
            self._write(b"\x04")
            return
        self._write(b"\x04\x04")


def report_exit(reason, detail=None):
    # The last word of a boot to the host runner: why it ended, and what carries over. The
    # firmware is done, so the sim's reserve goes first: the report is made there, never from
    # what the firmware left.
    _simcore.sim_reserve = None
    import gc
    gc.collect()
    s = _simcore.settings
    state = {
        "heap_peak": _simcore.heap_peak,
        "flash_writes": _simflash.writes,
        "rtc_memory": s.get("rtc_memory", ""),
        "sim_heap_bytes": _simcore.sim_heap_bytes,
    }
    _simcore.report("exit", reason=reason, detail=detail, **state)
