# The device side of the fleet's tests: the uplink tests' application with counter events
# (app_with_events, on the flash beside this module), plus a task that prints, every
# `report_every_s` seconds, the device's own data totals (its status section "data") as
# "DATA <tx> <rx> <dp>" and its counters as "COUNTERS <json values> <pending>", so that a test can
# compare the last of them with the modem model's air bytes and with the fleet's view.
import asyncio
import json

import app.main as m
import app_with_events
from app import parts


async def report(status, every_s):
    while True:
        await asyncio.sleep(every_s)
        data = status.sections.get("data")
        if data is not None:
            print("DATA", data["tx"], data["rx"], data.get("dp", 0))
        counters = parts.get("counters")
        if counters is not None:
            s = counters.status()
            print("COUNTERS", json.dumps(s["values"]).replace(" ", ""), s["pending"])


def start(report_every_s, event_every_s=0, events_until_s=0):
    build = m.App.build

    def with_report(self):
        build(self)
        self.spawn("datareport", lambda: report(self.status, report_every_s))

    m.App.build = with_report
    app_with_events.start(event_every_s, events_until_s)
