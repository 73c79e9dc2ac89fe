"""Scenarios for the modem model: what the radio and the network do to a virtual device.

A scenario is a plain JSON-able dict handed to `VirtualDevice(..., modem=scenario)`; the model
(sim/models/modem/, whose package docstring describes every field) reads it beside the device.
`load_scenario` reads one from a JSON or TOML file, a dict, or the name of a ready scenario in
`SCENARIOS`, checks every field and fills the defaults, so that a mistake is reported here, with
the field named, rather than as a modem that silently behaves differently:
`load_scenario({"rssi": 40})` raises ScenarioError("scenario: rssi: 40 is out of range (0 to
31)").
"""

from __future__ import annotations

import copy
import json
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from musket_sim.device import SimError

FAMILIES = ("sim7080", "sim7600", "bg95", "sim7000")
RATS = ("lte-m", "nb-iot", "lte")

# Fields whose default depends on the family, the board or the device seed stay None here and
# are settled by the model (see sim/models/modem/base.py).
DEFAULTS: dict[str, Any] = {
    "family": None,
    "sim_present": True,
    "iccid": None,
    "imei": None,
    "imsi": None,
    "apn": "",
    "stale_context": "",
    "operator": "MusketNet",
    "plmn": "26201",
    "rat": None,
    "rssi": 20,
    "rsrp": -95,
    "rsrq": -10,
    "sinr": 12,
    "roaming": False,
    "push": False,
    "register_s": None,
    "boot_s": None,
    "reply_ms": 5,
    "latency_ms": None,
    "hosts": {},
    "data_limit_bytes": None,
    "carrier_states": None,
    "events": [],
}

_MAX_SPAN_S = 366 * 86400  # events and delays beyond a year are mistakes
_MAX_GARBAGE = 4096


class ScenarioError(SimError):
    """A scenario that cannot be used; the message names the field."""


class _Problem(Exception):
    pass


# -- checks, one per kind of value; each returns the value or raises _Problem ---------------


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Problem(f"expected true or false, got {value!r}")
    return value


def _number(low: float, high: float, integer: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            kind = "an integer" if integer else "a number"
            raise _Problem(f"expected {kind}, got {value!r}")
        if not low <= value <= high:
            raise _Problem(f"{value!r} is out of range ({low:g} to {high:g})")
        return value
    return check


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise _Problem(f"unknown value {value!r} (expected one of: {', '.join(options)})")
        return value
    return check


def _text(max_len: int) -> Callable[[Any], str]:
    # Text that goes between double quotes in AT replies: printable ASCII without quotes.
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _Problem(f"expected a string, got {value!r}")
        if len(value) > max_len:
            raise _Problem(f"longer than {max_len} characters")
        if any(not (" " <= ch <= "~") or ch == '"' for ch in value):
            raise _Problem(f"{value!r}: only printable ASCII without double quotes")
        return value
    return check


def _digits(value: Any, lengths: tuple[int, ...]) -> str:
    if not isinstance(value, str) or not value.isdigit() or not value.isascii():
        raise _Problem(f"expected a string of digits, got {value!r}")
    if len(value) not in lengths:
        raise _Problem(f"{value!r} has {len(value)} digits (expected "
                       f"{' or '.join(str(n) for n in lengths)})")
    return value


def luhn_digit(body: str) -> str:
    """The Luhn check digit for a string of digits (IMEI, ICCID)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _iccid(value: Any) -> str:
    # As the SIM reports it: digits, where some issuers put upper-case hex digits, 19 or 20 of
    # them, possibly padded to 20 with an F.
    if not isinstance(value, str) or not value or any(ch not in "0123456789ABCDEF"
                                                      for ch in value):
        raise _Problem(f"expected a string of digits (hex digits A-F allowed), got {value!r}")
    body = value[:-1] if len(value) == 20 and value.endswith("F") else value
    if len(body) not in (19, 20):
        raise _Problem(f"{value!r} has {len(body)} digits (expected 19 or 20)")
    if not value.startswith("89"):
        raise _Problem(f"{value!r} does not start with 89 (the telecom industry prefix)")
    return value


def _imei(value: Any) -> str:
    _digits(value, (15,))
    if luhn_digit(value[:14]) != value[14]:
        raise _Problem(f"{value!r} fails the Luhn check (last digit should be "
                       f"{luhn_digit(value[:14])})")
    return value


def _imsi(value: Any) -> str:
    return _digits(value, (14, 15))


def _plmn(value: Any) -> str:
    return _digits(value, (5, 6))


def _loopback(target: str) -> bool:
    host = target.rsplit(":", 1)[0] if ":" in target else target
    if host == "localhost":
        return True
    parts = host.split(".")
    return (len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts)
            and parts[0] == "127")


def _hosts(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Problem(f"expected a table of name = \"127.0.0.1[:port]\", got {value!r}")
    for name, target in value.items():
        if not isinstance(name, str) or not name or '"' in name:
            raise _Problem(f"bad host name {name!r}")
        if not isinstance(target, str) or not _loopback(target):
            raise _Problem(f"{name}: {target!r} is not a loopback address (127.0.0.0/8 or "
                           "localhost, optionally with :port): the sim never sends traffic "
                           "off the machine")
        if ":" in target:
            port = target.rsplit(":", 1)[1]
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise _Problem(f"{name}: bad port in {target!r}")
    return dict(value)


def _true(value: Any) -> bool:
    if value is not True:
        raise _Problem(f"expected true, got {value!r}")
    return value


def _garbage(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Problem(f"expected text, or \"hex:\" and hex digits, got {value!r}")
    if value.startswith("hex:"):
        try:
            data = bytes.fromhex(value[4:])
        except ValueError as err:
            raise _Problem(f"bad hex after 'hex:' ({err})") from None
        if not data:
            raise _Problem("no bytes after 'hex:'")
    elif not value.isascii():
        raise _Problem("text must be ASCII (use \"hex:...\" for other bytes)")
    return value


_FIELDS: dict[str, Callable[[Any], Any]] = {
    "family": _choice(FAMILIES),
    "sim_present": _bool,
    "iccid": _iccid,
    "imei": _imei,
    "imsi": _imsi,
    "apn": _text(100),
    "stale_context": _text(100),
    "operator": _text(24),
    "plmn": _plmn,
    "rat": _choice(RATS),
    "rssi": _number(0, 31, integer=True),
    "rsrp": _number(-140, -44, integer=True),
    "rsrq": _number(-20, -3, integer=True),
    "sinr": _number(-20, 30, integer=True),
    "roaming": _bool,
    "push": _bool,
    "register_s": _number(0, 3600),
    "boot_s": _number(0.1, 60),
    "reply_ms": _number(0, 10000),
    "latency_ms": _number(0, 10000),
    "hosts": _hosts,
    "data_limit_bytes": _number(1, 2**53, integer=True),
    "carrier_states": _text(4096),
}

_EVENT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "coverage": _bool,
    "deny": _bool,
    "reject_cause": _number(0, 255, integer=True),
    "sms_only": _bool,
    "hang": _true,
    "drop_data": _true,
    "drop_sockets": _true,
    "close_after_open": _true,
    "modem_reset": _true,
    "garbage": _garbage,
    "garbage_bytes": _number(1, _MAX_GARBAGE, integer=True),
    "slow_ms": _number(0, 600000, integer=True),
    "sim_swap": _iccid,
    "data_stop": _bool,
}


def _check_events(value: Any) -> list[dict]:
    if not isinstance(value, list):
        raise _Problem(f"expected a list of events, got {value!r}")
    events = []
    for i, event in enumerate(value):
        where = f"events[{i}]"
        if not isinstance(event, dict):
            raise ScenarioError(f"{where}: expected a table like {{at = 60, coverage = false}}, "
                                f"got {event!r}")
        if "at" not in event:
            raise ScenarioError(f"{where}.at: missing (virtual seconds on the device clock)")
        checked = {"at": _field(f"{where}.at", event["at"], _number(0, _MAX_SPAN_S))}
        actions = [k for k in event if k != "at"]
        if not actions:
            raise ScenarioError(f"{where}: says nothing happens (expected one of: "
                                f"{', '.join(_EVENT_FIELDS)})")
        for key in actions:
            if key not in _EVENT_FIELDS:
                raise ScenarioError(f"{where}.{key}: unknown event (expected one of: "
                                    f"{', '.join(_EVENT_FIELDS)})")
            checked[key] = _field(f"{where}.{key}", event[key], _EVENT_FIELDS[key])
        events.append(checked)
    return sorted(events, key=lambda e: e["at"])


def _field(name: str, value: Any, check: Callable[[Any], Any]) -> Any:
    try:
        return check(value)
    except _Problem as err:
        raise ScenarioError(f"{name}: {err}") from None


def check_scenario(data: dict) -> dict:
    """Checks a scenario dict and returns a copy with every default filled in."""
    if not isinstance(data, dict):
        raise ScenarioError(f"expected a table of fields, got {type(data).__name__}")
    out = copy.deepcopy(DEFAULTS)
    for key, value in data.items():
        if key == "events":
            try:
                out["events"] = _check_events(value)
            except _Problem as err:
                raise ScenarioError(f"events: {err}") from None
        elif key in _FIELDS:
            out[key] = None if value is None and DEFAULTS.get(key) is None else _field(
                key, value, _FIELDS[key])
        else:
            raise ScenarioError(f"{key}: unknown field (expected one of: "
                                f"{', '.join(DEFAULTS)})")
    return out


def load_scenario(source: str | os.PathLike[str] | dict) -> dict:
    """A checked scenario with defaults filled, from a dict, a .json/.toml file, or the name
    of a ready scenario (see SCENARIOS). Raises ScenarioError naming the file and field."""
    if isinstance(source, dict):
        return _checked("scenario", source)
    path = Path(source)
    if isinstance(source, str) and source in SCENARIOS and not path.exists():
        return _checked(source, SCENARIOS[source])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        known = ", ".join(SCENARIOS)
        raise ScenarioError(f"{source}: cannot read scenario file: {err.strerror} (ready "
                            f"scenarios: {known})") from None
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{path.name}: not UTF-8 text ({err.reason})") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ScenarioError(f"{path.name}: expected a .json or .toml file")
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise ScenarioError(f"{path.name}: not valid {path.suffix[1:].upper()}: {err}") from None
    return _checked(path.name, data)


def _checked(origin: str, data: Any) -> dict:
    try:
        return check_scenario(data)
    except ScenarioError as err:
        raise ScenarioError(f"{origin}: {err}") from None


# Ready scenarios: the network conditions a device must live through. Times are virtual seconds
# on the device clock (a fresh device starts at 0).
SCENARIOS: dict[str, dict] = {
    # everything works
    "good": {},
    # coverage goes away five minutes in and comes back thirty minutes later
    "no-coverage-30m": {"events": [{"at": 300, "coverage": False},
                                   {"at": 2100, "coverage": True}]},
    # the network refuses registration (e.g. a SIM without a roaming agreement: EMM cause 11,
    # PLMN not allowed)
    "denied": {"events": [{"at": 0, "deny": True, "reject_cause": 11}]},
    # attached for SMS only: registration looks fine, data attach fails
    "sms-only": {"events": [{"at": 0, "sms_only": True}]},
    # the modem firmware locks up after ten minutes; only a power cycle brings it back
    "hang": {"events": [{"at": 600, "hang": True}]},
    # the network tears down the data session after ten minutes, registration stays
    "drop": {"events": [{"at": 600, "drop_data": True}]},
    # a technician swaps the SIM after an hour; the modem reads it at its next power-on
    "sim-swap": {"events": [{"at": 3600, "sim_swap": "8949017000000000001"}]},
    # the APN the network wants is not the one left in the modem from the factory
    "stale-apn": {"apn": "iot.musket", "stale_context": "internet.old"},
    # no SIM in the slot: the modem says so, and never registers
    "no-sim": {"sim_present": False},
    # a SIM whose issuer puts a hex digit in its ICCID, padded to 20 with an F
    "hex-iccid": {"iccid": "89860070090A6019125F"},
    # an older SIMCom module (SIM7000G on a SIM7080 board) that answers the bearer commands
    # in their older form
    "sim7000": {"family": "sim7000"},
    # after ten minutes the modem loses its sockets without a word; the next send is refused
    # in place of the ">" prompt
    "silent-close": {"events": [{"at": 600, "drop_sockets": True}]},
    # after ten minutes the network closes a connection as soon as it opens
    "close-on-open": {"events": [{"at": 600, "close_after_open": True}]},
    # a Quectel modem that pushes received data instead of keeping it for AT+QIRD
    "quectel-push": {"push": True},
    # after ten minutes the modem restarts by itself (a brown-out) and says RDY again
    "modem-reset": {"events": [{"at": 600, "modem_reset": True}]},
}
