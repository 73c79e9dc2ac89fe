# The device application: one asyncio program. Boot bookkeeping (reset cause, boot count),
# config, the log ring and the status structure are set up here, then the tasks run under a
# supervisor that restarts a failed task after a pause and lets the watchdog act if the whole
# loop stalls.
import asyncio
import gc
import machine

from app import log as log_mod
from app import status as status_mod
from app import store
from micropython import const

STATE_PATH = "/state.json"
_MODEM_RESET_MARK = const(b"musket:modem-reset")
_TASK_RESTART_DELAY_MS = const(5000)  # pause before restarting a task that raised
_WDT_FEEDS_PER_TIMEOUT = const(3)  # feed three times per watchdog period: one miss is no reset


def reset_cause():
    # machine.reset_cause() by name. A table made per call: only boot asks, and a module-level
    # one would hold heap for the life of the device.
    return {
        machine.PWRON_RESET: "power-on",
        machine.HARD_RESET: "hard",
        machine.WDT_RESET: "watchdog",
        machine.DEEPSLEEP_RESET: "deep-sleep",
        machine.SOFT_RESET: "soft",
    }.get(machine.reset_cause(), "unknown")


def unload(*names):
    # Drops app modules that are done with (app.<name>, or app.<package>.<name>): from
    # sys.modules and from their package, so nothing holds them; a later import loads them again.
    import sys

    for name in names:
        full = "app." + name
        sys.modules.pop(full, None)
        cut = full.rfind(".")
        package = sys.modules.get(full[:cut])
        if package is not None and full[cut + 1:] in package.__dict__:
            delattr(package, full[cut + 1:])


class App:
    def __init__(self):
        self.log = log_mod.Log()
        self.status = status_mod.Status()
        self.config = {}
        self.board = {}
        self.tasks = {}
        self.modem = None
        self.uplink = None
        self.sensors = None  # app.sensors.Sensors, when the board has sensors
        self.counters = None  # app.counter.Counters, when it has usage sensors

    def boot(self):
        # The board and config modules are needed only here: they are unloaded afterwards
        # so that their code does not hold heap for the life of the device.
        from app import board as board_mod
        from app import config as config_mod

        self.status.reset_cause = reset_cause()
        try:
            self.board = board_mod.load()
            self.status.board = self.board.get("name", "")
        except board_mod.BoardError as e:
            self.log.error("boot", str(e))
        self.config, problems = config_mod.load()
        self.status.config_problems = problems
        self.log.set_level(self.config["log_level"])
        for problem in problems:
            self.log.warning("config", problem)
        try:
            state = store.read_json(STATE_PATH, {})
        except store.StoreError as e:
            self.log.error("boot", "state unreadable, starting over: %s" % e)
            state = {}
        state["boots"] = state.get("boots", 0) + 1
        store.write_json(STATE_PATH, state)
        self.status.boot_count = state["boots"]
        self.log.info("boot", "boot #%d, reset cause %s, board %s" % (
            state["boots"], self.status.reset_cause, self.status.board or "?"))
        unload("board", "config")

    def spawn(self, name, factory):
        # `factory` makes a fresh coroutine each time the task (re)starts.
        self.tasks[name] = asyncio.create_task(self._supervise(name, factory))

    async def _supervise(self, name, factory):
        restarts = self.status.section("tasks")
        while True:
            try:
                await factory()
                self.log.warning("app", "task %s ended" % name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a failing part must not take the device down
                self.log.exception("app", "task %s failed" % name, e)
            restarts[name] = restarts.get(name, 0) + 1
            await asyncio.sleep_ms(_TASK_RESTART_DELAY_MS)

    async def watchdog(self):
        # Feeds the watchdog while the loop runs and logs the status line every heartbeat_s:
        # one task for both, as each task holds heap for its frames.
        timeout = self.config["wdt_timeout_ms"]
        wdt = machine.WDT(timeout=timeout)
        feed_ms = timeout // _WDT_FEEDS_PER_TIMEOUT
        beat_ms = self.config["heartbeat_s"] * 1000
        left = beat_ms
        while True:
            wdt.feed()
            step = min(feed_ms, left)
            await asyncio.sleep_ms(step)
            left -= step
            if left <= 0:
                left = beat_ms
                self.heartbeat()

    def heartbeat(self):
        gc.collect()
        snap = self.status.snapshot(self.log)
        modem = snap.get("modem") or {}
        self.log.info("status", "up %ds, heap free %d, errors %d, modem %s" % (
            snap["uptime_s"], snap["heap_free"], snap["log_errors"],
            modem.get("state", "none")))

    def start_modem(self):
        # The cellular link, when the board has a modem: the connection manager brings it up
        # and keeps it up; its status is the "modem" section of the device status.
        if not self.board.get("modem"):
            return None
        from app.modem import open_modem
        from app.modem.manager import ConnectionManager

        # The last rung of the escalation ladder resets the board, but only once in a row: a
        # boot that follows such a reset (marked in RTC memory, which survives it) keeps
        # cycling the modem's power instead, so a dead modem does not become a reset loop.
        rtc = machine.RTC()
        after_modem_reset = rtc.memory() == _MODEM_RESET_MARK
        if after_modem_reset:
            rtc.memory(b"")
            self.log.warning("modem", "booted after a reset for the modem; no more of those")

        def reset_board():
            rtc.memory(_MODEM_RESET_MARK)
            machine.reset()

        manager = ConnectionManager(open_modem(self.board, self.log), self.log,
                                    apn=self.config["apn"],
                                    reset_board=None if after_modem_reset else reset_board)
        self.status.sections["modem"] = manager.status
        self.spawn("modem", manager.run)
        return manager

    def start_uplink(self):
        # The MQTT uplink over the modem, once provisioning has named a broker: readings are
        # sampled and queued whether or not the link is up. Made before the modem starts, so
        # its buffers come from an unbroken heap; it runs once the modem is there.
        if not self.board.get("modem") or not self.config["mqtt_host"]:
            return None
        from app.uplink.service import Uplink

        uplink = Uplink(self)
        self.status.sections["uplink"] = uplink.status
        self.spawn("sample", uplink.sample)
        return uplink

    def start_usage(self):
        # Sensors, usage detection and the counters. The counters open (finishing anything a
        # power cut interrupted) before the uplink can deliver their events.
        if not self.board.get("sensors"):
            return
        from app import counter
        from app.sensors import SensorError, Sensors, open_sensors
        from app.usage import Usage

        try:
            self.sensors = Sensors(open_sensors(self.board))
        except (SensorError, KeyError, OSError, ValueError) as e:
            self.log.error("sensors", "cannot set up the board's sensors: %r" % (e,))
            return
        self.status.sections["sensors"] = self.sensors.section
        if not (self.sensors.get("current") or self.sensors.get("flow")):
            return
        rules, problems = counter.parse_rules(self.config["service_rules"])
        for problem in problems:
            self.log.warning("counter", problem)
        try:
            self.counters = counter.Counters(rules, log=self.log)
        except store.StoreError as e:
            self.log.error("counter", "counters unreadable, not counting: %s" % e)
            return
        self.status.sections["counters"] = self.counters.section
        self.spawn("usage", Usage(self.sensors, self.counters, self.config, self.log).run)

    async def main(self):
        self.spawn("watchdog", self.watchdog)
        self.start_usage()
        self.uplink = self.start_uplink()
        self.modem = self.start_modem()
        if self.uplink is not None and self.modem is not None:
            self.uplink.manager = self.modem
            self.spawn("uplink", self.uplink.run)
        # The parts have taken what they need from the board definition; the parsed file
        # would hold over a kilobyte of heap for the life of the device.
        self.board = None
        while self.tasks:
            await asyncio.sleep(3600)


app = None


def start():
    global app
    app = App()
    app.boot()
    asyncio.run(app.main())
