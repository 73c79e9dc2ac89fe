# The device application: one asyncio program. Boot bookkeeping (reset cause, boot count),
# config, the log ring and the status structure are set up here; then each part is built from
# the collaborators it needs (sensors, usage counter, modem link, uplink), registered in
# app.parts, and run as a task under a supervisor that restarts a failed task after a pause
# and lets the watchdog act if the whole loop stalls.
import asyncio
import gc
import machine

from app import log as log_mod
from app import parts, store
from app import status as status_mod
from micropython import const

STATE_PATH = "/state.json"
_MODEM_RESET_MARK = const(b"musket:modem-reset")
_TASK_RESTART_DELAY_MS = const(5000)  # pause before restarting a task that raised
_WDT_FEEDS_PER_TIMEOUT = const(3)  # feed three times per watchdog period: one miss is no reset
# The heartbeat waits for a message under way, a second at a time, for at most 30 s.
_BEAT_RETRY_MS = const(1000)
_BEAT_LATE_MS = const(30000)
_LARGEST_FREE_STEP = const(16)  # the largest free block is found to within, and rounded to, this
_CR = const(0x0D)  # the console's line ends
_LF = const(0x0A)
# A collection after every 4 KB allocated, not only when the heap runs out: what stays alive
# (a task's frame, a queued reading) is then placed low in the heap, among the holes the last
# collection freed, instead of wherever the allocations had reached, and the free heap stays
# in one large block rather than hundreds of small ones (docs/firmware.md, Heap).
_GC_THRESHOLD = const(4096)


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


class App:
    # The supervisor: boot, the watchdog and the status line, and the parts' tasks. It keeps
    # no config: boot() reads it, each part takes its own keys when built, and the parts are
    # the owners of their settings from then on (app.config names the owner of each key).
    def __init__(self, update=None):
        # The update's boot stage's state (otaboot.py): whether this version runs on trial,
        # and how the last update ended.
        self.update = update or {}
        self.log = log_mod.Log()
        self.status = status_mod.Status()
        self.tasks = {}
        self.wdt_timeout_ms = 0  # the watchdog's settings, read at boot only
        self.heartbeat_s = 0
        self.busy = None  # fn() -> whether a message is under way (the uplink's busy)

    def boot(self):
        # -> (config, board), for build(). The board and config modules are needed only here:
        # they are unloaded afterwards so that their code does not hold heap for the life of
        # the device.
        from app import board as board_mod
        from app import config as config_mod
        from app import unload

        board = {}
        self.status.reset_cause = reset_cause()
        try:
            board = board_mod.load()
            self.status.board = board.get("name", "")
        except board_mod.BoardError as e:
            self.log.error("boot", str(e))
        config, problems = config_mod.load()
        self.status.config_problems = problems
        self.log.configure("log_level", config["log_level"])
        for problem in problems:
            self.log.warning("config", problem)
        self.wdt_timeout_ms = config["wdt_timeout_ms"]
        self.heartbeat_s = config["heartbeat_s"]
        try:
            state = store.read_json(STATE_PATH, {})
        except store.StoreError as e:
            self.log.error("boot", "state unreadable, starting over: %s" % e)
            state = {}
        state["boots"] = state.get("boots", 0) + 1
        store.write_json(STATE_PATH, state)
        self.status.boot_count = state["boots"]
        from app.health import Health

        health = Health(self.status, self.log)
        self.status.reset_cause = health.boot(self.status.reset_cause)
        version = self.update.get("version", "0.0.0")
        identity = {"device_id": config["device_id"], "firmware": version,
                    "bundle": (self.update.get("last") or {}).get("version") or version}
        image = self.update.get("image_version")
        if image:
            # The firmware image's version, once an image update confirmed (app.ota.slots). No
            # key while the device runs the image flashed on the line, on either layout (most
            # devices): their heap pays nothing for it.
            identity["image"] = image
        self.status.sections["identity"] = identity
        self.log.info("boot", "boot #%d, reset cause %s, board %s" % (
            state["boots"], self.status.reset_cause, self.status.board or "?"))
        health.save()  # after the line: a cut in this write still leaves the boot logged
        del health
        del Health
        unload("board", "config", "health")
        return config, board

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
        wdt = machine.WDT(timeout=self.wdt_timeout_ms)
        feed_ms = self.wdt_timeout_ms // _WDT_FEEDS_PER_TIMEOUT
        beat_ms = self.heartbeat_s * 1000
        left = beat_ms
        late = 0
        while True:
            wdt.feed()
            step = min(feed_ms, left)
            await asyncio.sleep_ms(step)
            left -= step
            if left > 0:
                continue
            if self.busy is not None and self.busy() and late < _BEAT_LATE_MS:
                # A message under way holds its frames and buffers for a moment: the heap is
                # read once it is through, so that hour after hour the status line compares
                # the heap at rest (docs/firmware.md, Heap).
                left = _BEAT_RETRY_MS
                late += _BEAT_RETRY_MS
                continue
            left = beat_ms - late
            late = 0
            self.heartbeat()

    def heartbeat(self):
        # The status line, with the largest allocation the heap can give at once (a multiple
        # of 16 bytes): the fragmentation that heap free does not show. MicroPython has no
        # call for it (micropython.mem_info() prints it to stdout), so a binary search of
        # bytearray allocations between 0 and gc.mem_free() finds it, each dropped at once:
        # 13 probes for a 96K heap. A failed probe is a MemoryError; the allocator collects
        # before it raises one, so the garbage of earlier probes does not count against later
        # ones, and the collection after the search gives the last one back before heap free
        # is read. The search is here, not in a function of its own, and the figure is not
        # kept in the status: either holds 32 to 64 bytes of heap for the life of the device.
        gc.collect()
        ok = 0
        too_big = gc.mem_free() + 1
        while too_big - ok > _LARGEST_FREE_STEP:
            n = (ok + too_big) // 2
            try:
                bytearray(n)
                ok = n
            except MemoryError:
                too_big = n
        largest = ok - ok % _LARGEST_FREE_STEP
        gc.collect()
        snap = self.status.snapshot(self.log)
        low = self.status.heap_low
        if low is None:
            self.status.heap_low = [snap["heap_free"], largest]
        else:
            low[0] = min(low[0], snap["heap_free"])
            low[1] = min(low[1], largest)
        modem = snap.get("modem") or {}
        self.log.info("status", "up %ds, heap free %d, largest free %d, errors %d, modem %s" % (
            snap["uptime_s"], snap["heap_free"], largest, snap["log_errors"],
            modem.get("state", "none")))

    def start_usage(self, config, board):
        # Sensors, usage detection and the counters. -> (sensors, counters), each None when
        # the board has none. The counters open (finishing anything a power cut interrupted)
        # before the uplink can deliver their events.
        if not board.get("sensors"):
            return None, None
        from app import counter
        from app.sensors import SensorError, Sensors, open_sensors
        from app.usage import Usage

        try:
            sensors = Sensors(open_sensors(board))
        except (SensorError, KeyError, OSError, ValueError) as e:
            self.log.error("sensors", "cannot set up the board's sensors: %r" % (e,))
            return None, None
        self.status.sections["sensors"] = sensors.section
        parts["sensors"] = sensors
        if not (sensors.get("current") or sensors.get("flow")):
            return sensors, None
        rules, problems = counter.parse_rules(config["service_rules"])
        for problem in problems:
            self.log.warning("counter", problem)
        try:
            counters = counter.Counters(rules, log=self.log)
        except store.StoreError as e:
            self.log.error("counter", "counters unreadable, not counting: %s" % e)
            return sensors, None
        self.status.sections["counters"] = counters.section
        parts["counters"] = counters
        usage = parts["usage"] = Usage(sensors, counters, config, self.log)
        self.spawn("usage", usage.run)
        return sensors, counters

    def start_modem(self, config, board):
        # The cellular link, when the board has a modem: the connection manager brings it up
        # and keeps it up; its status is the "modem" section of the device status. Its task
        # first runs once main() waits, after every part is built.
        if not board.get("modem"):
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

        modem = open_modem(board, self.log)
        # The bytes its sockets carry, as the carrier bills them (the "data" section).
        from app.datause import DataUse

        modem.datause = DataUse(self.log, config.get("health_interval_s"))
        self.status.sections["data"] = modem.datause.section
        manager = ConnectionManager(modem, self.log,
                                    apn=config["apn"],
                                    reset_board=None if after_modem_reset else reset_board)
        self.status.sections["modem"] = manager.status
        parts["modem"] = manager
        self.spawn("modem", manager.run)
        return manager

    def tls_context(self, config):
        # The uplink's TLS context, the largest single object the firmware keeps (about 3 KB):
        # made before any other part, while the heap is in one piece. None without TLS, or
        # when the CA is missing or bad (the uplink's first session says why).
        if not (config["mqtt_tls"] and config["mqtt_host"]):
            return None
        from app.uplink import UplinkError
        from app.uplink.service import tls_context

        try:
            return tls_context()
        except UplinkError:
            return None

    def start_uplink(self, config, link, sensors, counters, tls=None):
        # The MQTT uplink over the modem's link, once provisioning has named a broker; the
        # readings queue samples whether or not the link is up. Made before the modem's
        # task first runs, so the uplink's buffers come from an unbroken heap.
        if link is None or not config["mqtt_host"]:
            return
        from app.uplink.queue import ReadingQueue
        from app.uplink.service import Uplink

        queue = parts["readings"] = ReadingQueue(sensors, config["report_interval_s"],
                                                 self.log)
        uplink = parts["uplink"] = Uplink(link, counters, queue, config, self.log, tls)
        uplink.status_message = self.status_message
        from app.ota.download import Download

        download = uplink.download = parts["download"] = Download(self.log)
        download.boot_reports(self.update)
        uplink.reboot = download.done  # a bundle completed before a cut: install it now
        self.status.sections["ota"] = download.status
        self.status.sections["uplink"] = uplink.status
        self.spawn("sample", queue.run)
        self.busy = uplink.busy
        self.spawn("uplink", uplink.run)

    def build(self):
        # Boots, then builds every part from the collaborators it needs. The board file and
        # the config go when this returns, as the parts have taken what they need: both would
        # hold over a kilobyte of heap for the life of the device. Not in main(): a coroutine's
        # frame lives on, and with it whatever its stack once held.
        config, board = self.boot()
        parts["log"] = self.log
        parts["status"] = self.status
        tls = self.tls_context(config)
        sensors, counters = self.start_usage(config, board)
        link = self.start_modem(config, board)
        self.start_uplink(config, link, sensors, counters, tls)
        if self.update.get("phase") == "trial":
            self.start_trial(config, counters)
        self.start_console()

    def status_message(self, as_json):
        # The uplink's online status (app.health, loaded for it and let go after it).
        from app import unload
        from app.health import Health

        try:
            return Health(self.status, self.log).message(as_json)
        finally:
            del Health
            unload("health")

    def start_console(self):
        self.spawn("console", self.console)

    async def console(self):
        # The technician's console on the REPL UART. Between requests only this task, its
        # reader and a byte are in the heap: the console (app.console: the line being typed,
        # the service mode) is loaded at a line's first byte and let go once idle again.
        import sys

        from app import unload

        reader = asyncio.StreamReader(sys.stdin)
        byte = bytearray(1)
        last = 0
        con = None
        lost = False  # the console found no room at this line's first byte: dropped to its end
        while await reader.readinto(byte):  # none: the console's other end is gone (sim only)
            c = byte[0]
            if con is None:
                if not lost:
                    try:
                        con = _open_console(self.status, self.log)
                    except MemoryError:
                        lost = True
                if lost:
                    if c == _CR or c == _LF:
                        lost = False
                        sys.stdout.write("\nerror: out of memory now: ask again\n")
                    last = c
                    continue
            await con.take(c, last)
            last = c
            if con.idle():
                con = None
                unload("console")

    def start_trial(self, config, counters):
        # The version on trial confirms itself once the uplink's broker acknowledged it.
        from app.ota import trial

        uplink = parts.get("uplink")
        if uplink is None:
            self.log.error("ota", "on trial without an uplink: nothing can confirm it")
            return
        trial_s = config["ota_trial_s"]
        self.spawn("trial", lambda: trial.run(uplink.session_up, counters is not None,
                                              trial_s, uplink.download, self.log,
                                              self.status.sections.get("identity")))

    async def main(self):
        self.spawn("watchdog", self.watchdog)
        self.build()
        while self.tasks:
            await asyncio.sleep(3600)


def start(update=None):
    # Set here, where the application starts (main.py, or a test's script), so that it runs
    # with the same heap policy however it is started.
    gc.threshold(_GC_THRESHOLD)
    app = App(update)
    try:
        asyncio.run(app.main())
    except KeyboardInterrupt:
        # Ctrl-C at the console (mpremote, ampy, a person): the REPL takes the console over.
        # The watchdog keeps running and resets the board unless fed or stretched.
        print("musket: application stopped by Ctrl-C; Ctrl-D (soft reset) starts it again")
    except Exception as e:  # noqa: BLE001 - the device resets; the crash is kept for after it
        _record_crash(app, e)


def _open_console(status, log):
    # Its own frame: no name of app.console's is left behind to keep the module when it goes.
    from app.console import Console

    return Console(status, log)


def _record_crash(app, e):
    # What failed goes to flash before the reset (app.health), so the next boot reports it.
    from app.health import Health

    Health(app.status, app.log).crash(e)
    app.log.exception("app", "crashed, resetting", e)
    machine.reset()
