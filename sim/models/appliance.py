# What the appliance does: when brews and dispenses happen, as a pure function of the usage
# scenario, the seed and the day. Played by the sensor model (sensors.py) and read by
# musket_sim.usage_scenario, which derives the counts a run must produce from the same events.
# Generated lazily, one event at a time, so a year costs no more than a day.
#
# Channels: "current" yields ("brew" | "blip", start_s, seconds, amps); "flow" yields
# ("dispense" | "drip", start_s, seconds, pulses). Events on one channel never overlap and
# are separated by at least the scenario's min_gap_s, so a detector that debounces
# correctly sees each one alone.

DAY_S = 86400


class Rng:
    # xorshift32: small ints only, the same sequence under both interpreters.
    def __init__(self, seed):
        self.x = (seed * 2654435761 + 12345) & 0xFFFFFFFF or 1

    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def uniform(self, lo, hi):
        return lo + (hi - lo) * (self.next() % 1000001) / 1000000

    def chance(self, p):
        return self.next() % 1000000 < p * 1000000


def events(usage, seed, channel, from_s=0):
    # Events of `channel` starting at or after from_s, in time order, forever (none at all
    # when the scenario has none on that channel).
    if usage["brews_per_day" if channel == "current" else "dispenses_per_day"] <= 0:
        return
    day = int(from_s // DAY_S)
    while True:
        for ev in _day(usage, seed, channel, day):
            if ev[1] >= from_s:
                yield ev
        day += 1


def _day(usage, seed, channel, day):
    rng = Rng(seed * 1009 + day * 7919 + (1 if channel == "current" else 2))
    per_day = usage["brews_per_day" if channel == "current" else "dispenses_per_day"]
    open_s = usage["open_h"][0] * 3600
    close_s = usage["open_h"][1] * 3600
    if per_day <= 0:
        return
    gap_min = usage["min_gap_s"]
    mean_gap = (close_s - open_s) / per_day
    t = day * DAY_S + open_s + rng.uniform(0, mean_gap)
    end = day * DAY_S + close_s
    while True:
        if channel == "current":
            if rng.chance(usage["blip_chance"]):
                ev = ("blip", t, rng.uniform(1, 4), rng.uniform(*usage["brew_amps"]))
            else:
                ev = ("brew", t, rng.uniform(*usage["brew_s"]), rng.uniform(*usage["brew_amps"]))
        elif rng.chance(usage["drip_chance"]):
            ev = ("drip", t, rng.uniform(0.5, 2), 1 + rng.next() % 5)
        else:
            litres = rng.uniform(*usage["litres"])
            seconds = litres / rng.uniform(*usage["l_per_min"]) * 60
            ev = ("dispense", t, seconds, int(litres * usage["k_factor"]))
        if t + ev[2] >= end:
            return
        yield ev
        t += ev[2] + gap_min + rng.uniform(0, max(0.0, 2 * mean_gap - 2 * gap_min))


def fault_at(usage, sensor, now_s):
    # The fault the scenario puts on `sensor` at now_s ("nack", "crc", "stuck",
    # "disconnected"), or None.
    for f in usage["faults"]:
        if f["sensor"] == sensor and f["at"] <= now_s < f["at"] + f["for"]:
            return f["kind"]
    return None
