"""A simulated week of a coffee-machine fleet for the services' acceptance test and bench:
twenty devices with usage models of different intensity (brews in the day's opening hours),
their telemetry and status messages made by the devices' own codec, one device staged to
reboot three times in a day with a diagnosis code, one that goes silent, and one message held
back for days (delivered late)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from fleethelp import ACTOR, bind, iccid
from svchelp import T0, Device, status_message

HOUR = 3600
DAY = 24 * HOUR
DAYS = 7
OPEN_HOURS = range(7, 19)  # when people brew
STATUS_EVERY_H = 4  # the devices' health interval
BREWS_PER_DAY = [5, 8, 10, 12, 15, 18, 20, 25, 30, 35, 40, 45, 50, 55, 60, 6, 14, 22, 33, 48]
DEVICES = [f"wk-{n:02d}" for n in range(len(BREWS_PER_DAY))]
CUSTOMERS = ["acme", "bistro", "cafe-c", "deli"]
STAGED = "wk-07"  # reboots at 10:00, 12:00, 14:00 on day 2, healthy again from 16:00
STAGED_REBOOTS_H = (2 * 24 + 10, 2 * 24 + 12, 2 * 24 + 14)
HEALTHY_AGAIN_H = 2 * 24 + 16
SILENT = "wk-12"  # sends nothing from day 4 00:00 to 20:00
SILENT_HOURS = range(4 * 24, 4 * 24 + 20)
LATE = ("wk-03", 1 * 24 + 10)  # this hour's messages arrive on day 4
LATE_DELIVERY_H = 4 * 24

RULES = """\
product: coffee
consumables:
  beans: {counter: brews, per_use: 0.01, capacity: 1.0, lead_time_days: 1, margin_days: 1}
tariff: {currency: EUR, minimum: 10, prices: {brews: 0.05}}
customer_tariffs:
  cafe-c: {currency: EUR, minimum: 0, prices: {brews: 0.04}}
rules:
  - name: descale
    when: {counter: brews, every: 100}
    do: [{sink: {path: descale.jsonl}}]
  - name: beans-low
    when: {consumable: beans}
    do: [{order: }, {sink: {path: orders.csv, format: csv}}]
  - name: unstable
    when: {reboots: 3, within_hours: 24}
    do:
      - ticket: {problem: "3 unexpected reboots in 24 h", healthy_after_hours: 1}
      - webhook: {url: "WEBHOOK", tries: 5}
  - name: silent
    when: {silent_hours: 12}
    do: [{sink: {path: alerts.jsonl}}]
"""


def seed(registry, folder) -> None:
    """The week's devices in the registry, each bound to a SIM of its own."""
    path = folder / "week-sims.csv"
    path.write_text("ICCID,plan,state\n" + "".join(
        f"{iccid(300 + n)},iot-eu-10mb,inventory\n" for n in range(len(DEVICES))))
    registry.import_sims(path, ACTOR)
    for n, device_id in enumerate(DEVICES):
        bind(registry, device_id, iccid(300 + n), 40 + n)


def sites() -> list[tuple[str, str, str, str]]:
    return [(d, CUSTOMERS[n % len(CUSTOMERS)], "coffee", f"{CUSTOMERS[n % 4]} site {n}")
            for n, d in enumerate(DEVICES)]


@dataclass
class Fleet:
    """The devices and what they did: each brew's (time, total) per device."""

    devices: dict[str, Device] = field(default_factory=dict)
    brews: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    held: list = field(default_factory=list)
    health: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for d in DEVICES:
            self.devices[d] = Device(d)
            self.brews[d] = []
            self.health[d] = {"boots": 1, "rr": {"power-on": 1}, "dx": [], "up_from": T0}

    def hour(self, h: int) -> list:
        """The messages the devices send in hour `h` of the week (what arrives: a held-back
        hour is left out here and comes with LATE_DELIVERY_H)."""
        out = []
        t = T0 + h * HOUR
        for n, d in enumerate(DEVICES):
            if d == SILENT and h in SILENT_HOURS:
                continue
            rng = random.Random(f"{d}/{h}")
            if h % 24 in OPEN_HOURS:
                mean = BREWS_PER_DAY[n] / len(OPEN_HOURS)
                k = int(mean) + (rng.random() < mean - int(mean))
                if k:
                    at = t + rng.randrange(60, 3000)
                    messages = self.devices[d].use("brews", k, at)
                    total = self.devices[d].totals["brews"]
                    self.brews[d] += [(at, total - k + i + 1) for i in range(k)]
                    if (d, h) == LATE:
                        self.held += messages
                    else:
                        out += messages
            out += self._status(d, h, t)
        if h == LATE_DELIVERY_H:
            out += self.held
        return out

    def _status(self, d: str, h: int, t: int) -> list:
        s = self.health[d]
        if d == STAGED and h in STAGED_REBOOTS_H:
            s["boots"] += 1
            s["rr"] = {**s["rr"], "watchdog": s["rr"].get("watchdog", 0) + 1}
            s["dx"], s["up_from"] = ["MODEM_HUNG"], t
        elif d == STAGED and h == HEALTHY_AGAIN_H:
            s["dx"] = []
        elif h % STATUS_EVERY_H:
            return []
        return [status_message(d, t + 30, s["boots"], dict(s["rr"]), t + 30 - s["up_from"],
                               s["dx"])]

    def runouts(self, installs: dict[str, list[int]], capacity_brews: int) -> dict:
        """(device, generation) -> when the beans of that installation actually ran out
        (the brew that took the last of them), for those that did. installs: the counter
        totals the installations counted from, in order (the first is 0)."""
        out = {}
        for d, zero_points in installs.items():
            for g, zero in enumerate(zero_points):
                empty = next((at for at, total in self.brews[d]
                              if total >= zero + capacity_brews), None)
                if empty is not None:
                    out[(d, g)] = empty
        return out
