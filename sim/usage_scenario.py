"""Usage scenarios for the sensor model: what the appliance around a virtual device does.

A usage scenario is a JSON-able dict handed to `VirtualDevice(..., usage=...)`; the sensor
model (musket_sim.models.sensors) plays it on the virtual clock: brews (current above the
threshold for tens of seconds), short current blips that are not brews, dispenses (bursts of
flow pulses), drips (a few pulses), temperature, humidity, supply voltage, and sensor faults
at set times. `load_usage` fills defaults and checks every field; `expected_uses` returns the
uses a correct detector counts over a span, from the same script the model plays.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from musket_sim.device import SimError
from musket_sim.models import appliance

DEFAULTS: dict[str, Any] = {
    "brews_per_day": 60,
    "brew_s": [18, 45],  # seconds a brew draws current
    "brew_amps": [2.5, 4.5],  # the board's ACS722-05 reads up to 5 A
    "blip_chance": 0.1,  # share of current events that are 1-4 s blips (grinder, priming)
    "dispenses_per_day": 100,
    "litres": [0.2, 1.5],
    "l_per_min": [1.5, 3.0],
    "drip_chance": 0.1,  # share of flow events that are 1-5 stray pulses
    "open_h": [7, 19],  # hours of the day the appliance is used
    "min_gap_s": 30,  # quiet time between two events on one channel
    "temp_c": 22.0,
    "rh": 45.0,
    "supply_v": 4.0,
    "faults": [],  # {"at": s, "for": s, "sensor": sht|current|supply, "kind": ...}
}
FAULT_KINDS = {"sht": ("nack", "crc", "stuck"), "current": ("disconnected", "stuck"),
               "supply": ("disconnected", "stuck")}

USAGE_SCENARIOS: dict[str, dict] = {
    # a café's day: 60 brews and 100 dispenses between 07:00 and 19:00
    "day": {},
    # a busy office: three times as much, for service thresholds within days
    "busy": {"brews_per_day": 180, "dispenses_per_day": 300, "min_gap_s": 20,
             "open_h": [6, 22]},
    # the first day with every sensor fault in turn: I2C NACK, a bad CRC, a stuck value,
    # a disconnected current sensor and supply divider
    "faults": {"faults": [
        {"at": 7 * 3600, "for": 3600, "sensor": "sht", "kind": "nack"},
        {"at": 9 * 3600, "for": 1800, "sensor": "sht", "kind": "crc"},
        {"at": 11 * 3600, "for": 3600, "sensor": "sht", "kind": "stuck"},
        {"at": 13 * 3600, "for": 3600, "sensor": "current", "kind": "disconnected"},
        {"at": 15 * 3600, "for": 3600, "sensor": "current", "kind": "stuck"},
        {"at": 17 * 3600, "for": 1800, "sensor": "supply", "kind": "disconnected"},
    ]},
}


class UsageError(SimError):
    """A usage scenario that cannot be used; the message names the field."""


def _range(name: str, value: Any) -> list[float]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not 0 <= value[0] <= value[1]):
        raise UsageError(f"usage: {name}: expected [low, high] with 0 <= low <= high, "
                         f"got {value!r}")
    return [float(v) for v in value]


def _fault(i: int, f: Any) -> dict:
    where = f"usage: faults[{i}]"
    if not isinstance(f, dict) or set(f) != {"at", "for", "sensor", "kind"}:
        raise UsageError(f"{where}: expected at, for, sensor, kind; got {f!r}")
    if f["sensor"] not in FAULT_KINDS:
        raise UsageError(f"{where}.sensor: unknown sensor {f['sensor']!r} (expected one of: "
                         f"{', '.join(FAULT_KINDS)})")
    if f["kind"] not in FAULT_KINDS[f["sensor"]]:
        raise UsageError(f"{where}.kind: {f['kind']!r} is not a fault of {f['sensor']} "
                         f"(expected one of: {', '.join(FAULT_KINDS[f['sensor']])})")
    for key in ("at", "for"):
        if isinstance(f[key], bool) or not isinstance(f[key], (int, float)) or f[key] < 0:
            raise UsageError(f"{where}.{key}: expected seconds >= 0, got {f[key]!r}")
    return dict(f)


def _checked(spec: dict) -> dict:
    unknown = sorted(set(spec) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"usage: unknown field {unknown[0]!r} (known: {', '.join(DEFAULTS)})")
    out = {**DEFAULTS, **spec}
    for key, default in DEFAULTS.items():
        value = out[key]
        if isinstance(default, list) and key != "faults":
            out[key] = _range(key, value)
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise UsageError(f"usage: {key}: expected a number >= 0, got {value!r}")
    if out["open_h"][1] > 24:
        raise UsageError(f"usage: open_h: hours run 0 to 24, got {out['open_h']!r}")
    for key in ("blip_chance", "drip_chance"):
        if out[key] > 1:
            raise UsageError(f"usage: {key}: a chance is 0 to 1, got {out[key]!r}")
    if not isinstance(out["faults"], list):
        raise UsageError("usage: faults: expected a list")
    out["faults"] = [_fault(i, f) for i, f in enumerate(out["faults"])]
    return out


def load_usage(source: str | Path | dict) -> dict:
    """A checked usage scenario from a dict, a .json/.toml file or a name in USAGE_SCENARIOS.
    Raises UsageError naming the field."""
    if isinstance(source, dict):
        return _checked(source)
    if isinstance(source, str) and source in USAGE_SCENARIOS and not Path(source).exists():
        return _checked(USAGE_SCENARIOS[source])
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"{source}: cannot read usage scenario: {err.strerror} (ready ones: "
                         f"{', '.join(USAGE_SCENARIOS)})") from err
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise UsageError(f"{source}: not valid {path.suffix[1:] or 'JSON'}: {err}") from err
    return _checked(data)


def events(usage: dict, seed: int, channel: str, start_s: float, end_s: float) -> list[tuple]:
    """The script's events on `channel` ("current", "flow") that start and end in the span."""
    out = []
    for ev in appliance.events(usage, seed, channel, start_s):
        if ev[1] + ev[2] >= end_s:
            return out
        out.append(ev)
    return out


def expected_uses(usage: dict, seed: int, start_s: float, end_s: float, *, brew_min_s: float,
                  min_pulses: int) -> tuple[list[tuple], list[tuple]]:
    """The uses a correct detector counts in the span, from the script: (certain, maybe),
    each a list of (name, start_s, amount) in time order, amount in brews or pulses.

    Certain: brews at least brew_min_s (+5 s of margin) long that no current-sensor fault
    comes near, and dispenses of at least min_pulses pulses (the flow meter has no faults in
    the model). Maybe: brews that a current-sensor fault window overlaps in part; brews wholly
    inside one are invisible and in neither list.
    """
    faults = [(f["at"], f["at"] + f["for"]) for f in usage["faults"] if f["sensor"] == "current"]
    certain, maybe = [], []
    for kind, start, seconds, _ in events(usage, seed, "current", start_s, end_s):
        if kind != "brew" or seconds < brew_min_s + 5:
            continue
        lo, hi = start - 60, start + seconds + 60  # detection reaches a little either side
        if not any(a < hi and lo < b for a, b in faults):
            certain.append(("brews", start, 1))
        elif not any(a <= start and start + seconds <= b for a, b in faults):
            maybe.append(("brews", start, 1))
    for _kind, start, _, pulses in events(usage, seed, "flow", start_s, end_s):
        if pulses >= min_pulses:
            certain.append(("litres", start, pulses))
    certain.sort(key=lambda u: u[1])
    return certain, maybe


def expected_counts(usage: dict, seed: int, start_s: float, end_s: float, *, brew_min_s: float,
                    min_pulses: int) -> tuple[int, int, int]:
    """(brews, millilitres, uncertain brews) a correct detector counts in the span, from
    `expected_uses`; millilitres as the firmware keeps them (pulses / K-factor, rounded)."""
    certain, maybe = expected_uses(usage, seed, start_s, end_s, brew_min_s=brew_min_s,
                                   min_pulses=min_pulses)
    k = usage["k_factor"]
    brews = sum(1 for use in certain if use[0] == "brews")
    ml = sum(round(use[2] * 1000 / k) for use in certain if use[0] == "litres")
    return brews, ml, len(maybe)
