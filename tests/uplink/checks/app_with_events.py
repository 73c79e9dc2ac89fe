# The device side of the uplink's acceptance tests (tests/uplink/): the whole application
# (app.main), with a stand-in for the readings (the board's sensor models need their own
# scenario) and a task that commits counter events through the real app.counter.Counters at
# a steady pace, printing "EV <seq>" for each.
import asyncio
import time

import app.main as m
from app import counter, parts

T0 = time.ticks_ms()


class Readings:
    def readings(self):
        return {"t": 21.5, "rh": 40.2, "v": 3.71}

    def faults(self):
        return {}


async def commit_events(counters, every_s, until_s):
    n = 0
    while time.ticks_diff(time.ticks_ms(), T0) // 1000 < until_s - every_s:
        await asyncio.sleep(every_s)
        n += 1
        if n % 10 == 0:
            seq = counters.adjust("brews", 0, "descaled", "test")
        else:
            seq = counters.count("brews", 1)
        print("EV", seq)


def start(event_every_s=0, events_until_s=0):
    """Runs the application; with `event_every_s`, an event that often until
    `events_until_s` seconds after boot."""
    start_usage = m.App.start_usage

    def with_events(self, config, board):
        sensors, counters = start_usage(self, config, board)
        if counters is None:
            counters = parts["counters"] = counter.Counters(log=self.log)
        if event_every_s:
            self.spawn("events", lambda: commit_events(counters, event_every_s,
                                                       events_until_s))
        return Readings(), counters

    m.App.start_usage = with_events
    m.start()


def write_file(path, data):
    """Puts `data` in the file at `path`, as provisioning would."""
    with open(path, "wb") as f:
        f.write(data)
