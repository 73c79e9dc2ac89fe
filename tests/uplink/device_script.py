"""The device side of the uplink's acceptance tests: the whole application (app.main), with a
stand-in for the readings (the board's sensor models need their own scenario) and a task that
commits counter events through the real app.counter.Counters at a steady pace."""

SCRIPT = """
import asyncio
import time
import app.main as m
from app import counter, parts

EVENT_EVERY_S = {event_every_s}
EVENTS_UNTIL_S = {events_until_s}
T0 = time.ticks_ms()


class Readings:
    def readings(self):
        return {{"t": 21.5, "rh": 40.2, "v": 3.71}}

    def faults(self):
        return {{}}


async def commit_events(counters):
    n = 0
    while time.ticks_diff(time.ticks_ms(), T0) // 1000 < EVENTS_UNTIL_S - EVENT_EVERY_S:
        await asyncio.sleep(EVENT_EVERY_S)
        n += 1
        if n % 10 == 0:
            seq = counters.adjust("brews", 0, "descaled", "test")
        else:
            seq = counters.count("brews", 1)
        print("EV", seq)


_start_usage = m.App.start_usage


def start_usage(self, config, board):
    sensors, counters = _start_usage(self, config, board)
    if counters is None:
        counters = parts["counters"] = counter.Counters(log=self.log)
    if EVENT_EVERY_S:
        self.spawn("events", lambda: commit_events(counters))
    return Readings(), counters


m.App.start_usage = start_usage
m.start()
"""


def device_script(event_every_s: int = 0, events_until_s: int = 0) -> str:
    return SCRIPT.format(event_every_s=event_every_s, events_until_s=events_until_s)
