# The device's status: one structure that the console, telemetry and tests read. Each part of
# the application owns a section and fills it in.
import gc
import time


class Status:
    def __init__(self):
        self.boot_count = 0
        self.reset_cause = "unknown"
        self.board = ""
        self.config_problems = []
        self.sections = {}
        # [heap free, largest free block]: the heartbeat's low-water marks of this boot (its
        # probe is app.main's), for the device's health (app.health).
        self.heap_low = None
        self._t0 = time.ticks_ms()

    def section(self, name):
        # A part's own section, created on first use.
        s = self.sections.get(name)
        if s is None:
            s = {}
            self.sections[name] = s
        return s

    def uptime_s(self):
        return time.ticks_diff(time.ticks_ms(), self._t0) // 1000

    def snapshot(self, log=None):
        out = {
            "boot_count": self.boot_count,
            "reset_cause": self.reset_cause,
            "board": self.board,
            "uptime_s": self.uptime_s(),
            "time": time.time(),
            "heap_free": gc.mem_free(),
            "heap_used": gc.mem_alloc(),
            "config_problems": len(self.config_problems),
        }
        if log is not None:
            out["log_errors"] = log.errors
            out["log_warnings"] = log.warnings
        for name in self.sections:
            out[name] = self.sections[name]
        return out
