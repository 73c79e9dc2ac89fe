"""Usage detection: turns sensor signals into counted uses.

* A brew: the current sensor above ``brew_ma`` for at least ``brew_min_s`` seconds. The brew
  ends after two samples below the threshold in a row (a one-sample dip is ripple, not the
  end); shorter runs (a grinder, a pump priming) are not counted.
* A dispense: a burst of flow-meter pulses; it ends after ``dispense_gap_s`` without a pulse
  and counts its volume (pulses / K-factor) if it had at least ``dispense_min_pulses``.

Each use is committed to the counters (flash) before anything else hears of it. A failed
flash write keeps the use in a short RAM queue and retries it on the next sample. A sensor
fault pauses only what depends on that sensor: a dead current sensor does not stop litres
being counted.
"""

import asyncio
import time

from app import store
from micropython import const

_ACTIVE_MS = const(1000)  # sample period while a brew or a dispense is under way
_IDLE_MS = const(4000)  # ... and while nothing is happening
_SLOW_S = const(60)  # temperature, humidity and supply voltage: once a minute
_OFF_SAMPLES = const(2)  # samples below the threshold that end a brew
_RETRY_MAX = const(16)  # uses waiting for the flash; more means the flash is gone


class Usage:
    # settings: the config; the detector keeps its four keys, and takes a change of any of
    # them at once (configure), from the next sample on.
    def __init__(self, sensors, counters, settings, log):
        self.sensors = sensors
        self.counters = counters
        self.log = log
        for key in ("brew_ma", "brew_min_s", "dispense_gap_s", "dispense_min_pulses"):
            self.configure(key, settings[key])
        self.current = sensors.get("current")
        self.flow = sensors.get("flow")
        self.brew_start = None  # ticks_ms of the first sample above the threshold
        self.brew_last = None  # ticks_ms of the last sample above it
        self.below = 0
        self.burst = 0  # pulses in the dispense under way
        self.burst_start = None
        self.burst_last = None
        self.pending = []  # (name, amount, info) not yet on flash
        self.faults = {}

    def configure(self, key, value):
        # A key of this part's (app.config names the owner of each), from boot or a command.
        if key == "brew_ma":
            self.brew_a = value / 1000
        elif key == "brew_min_s":
            self.brew_min_ms = value * 1000
        elif key == "dispense_gap_s":
            self.gap_ms = value * 1000
        elif key == "dispense_min_pulses":
            self.min_pulses = value

    async def run(self):
        next_slow = time.ticks_ms()
        while True:
            now = time.ticks_ms()
            if self.current is not None:
                self._brew(now, self.current.read())
            if self.flow is not None:
                self._dispense(now, self.flow.take())
            if time.ticks_diff(now, next_slow) >= 0:
                next_slow = time.ticks_add(now, _SLOW_S * 1000)
                for name in ["sht", "supply", "flow"]:  # a list: a tuple's strings cost heap
                    d = self.sensors.get(name)
                    if d is not None:
                        d.read()
                self.sensors.update_section()
                self.counters.status()
            self._report_faults()
            self._commit()
            busy = self.brew_start is not None or self.burst_start is not None
            await asyncio.sleep_ms(_ACTIVE_MS if busy else _IDLE_MS)

    def _brew(self, now, values):
        if values is None:  # current sensor fault: a brew in progress cannot be judged
            self.brew_start = None
            return
        if values["a"] >= self.brew_a:
            if self.brew_start is None:
                self.brew_start = now
            self.brew_last = now
            self.below = 0
            return
        if self.brew_start is None:
            return
        self.below += 1
        if self.below < _OFF_SAMPLES:
            return
        ms = time.ticks_diff(self.brew_last, self.brew_start) + _ACTIVE_MS
        self.brew_start = None
        if ms >= self.brew_min_ms:
            self._use("brews", 1, "%ds" % (ms // 1000))

    def _dispense(self, now, pulses):
        if pulses:
            if self.burst_start is None:
                self.burst_start = now
            self.burst += pulses
            self.burst_last = now
            return
        if self.burst_start is None or time.ticks_diff(now, self.burst_last) < self.gap_ms:
            return
        n, self.burst, self.burst_start = self.burst, 0, None
        if n >= self.min_pulses:
            litres = n / self.flow.k_factor
            self._use("litres", litres, "%dp" % n)

    def _use(self, name, amount, info):
        self.pending.append((name, amount, info))
        if len(self.pending) > _RETRY_MAX:
            lost = self.pending.pop(0)
            self.log.error("usage", "flash keeps failing: dropped %s %r" % (lost[0], lost[1]))

    def _commit(self):
        while self.pending:
            name, amount, info = self.pending[0]
            try:
                self.counters.count(name, amount, info)
            except store.StoreError as e:
                self.log.error("usage", "commit failed, will retry: %s" % e)
                return
            self.pending.pop(0)

    def _report_faults(self):
        faults = self.sensors.faults()
        if faults != self.faults:
            for name in faults:
                if self.faults.get(name) != faults[name]:
                    self.log.warning("sensors", "%s: %s" % (name, faults[name]))
            for name in self.faults:
                if name not in faults:
                    self.log.info("sensors", "%s: recovered" % name)
            self.faults = faults
            self.sensors.update_section()
