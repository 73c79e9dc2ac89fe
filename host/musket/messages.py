"""What devices publish, decoded for the fleet service: one function per kind of message, each
returning a typed value or raising BrokerError with the reason (a BadInput: the service counts
it as a rejected message and goes on).

- telemetry (``d/<id>/t`` and ``d/<id>/e``): :func:`musket.broker.decode_telemetry`, which this
  module re-exports; :class:`musket.broker.DeviceStream` orders and de-duplicates a stream;
- status (``d/<id>/s``, retained): :func:`decode_status`, the health map of the brief's
  contract A (CBOR, or JSON when the device's telemetry_json is set), or a bare ``1``
  (online, an older device) / ``0`` (offline: the will, or a clean goodbye);
- command replies (``d/<id>/r``): :func:`decode_reply`, JSON ``{"id", "ok", "result"|"error"}``;
  a batch's reply (:mod:`musket.batches`) as one reply per command: :func:`decode_replies`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from musket.broker import (  # noqa: F401 - re-exported: one place to import decoders from
    BrokerError,
    DeviceStream,
    Telemetry,
    decode_telemetry,
)

STATUS_SCHEMA = 1
STATUS_MAX = 1024  # bytes: a device's status is under 160; anything near this is not one


@dataclass(frozen=True)
class Status:
    """A device's status message. Every field but `online` is None when the device did not
    send it (a bare ``1``, ``0``, or an older firmware): unknown, not zero."""

    online: bool
    time: int | None = None
    firmware: str | None = None
    # The firmware image's version, sent once an image update confirmed: None is the image
    # flashed on the line (or a firmware that does not report it).
    image: str | None = None
    boot_count: int | None = None
    reset_cause: str | None = None
    reboot_reasons: dict[str, int] | None = None
    crash_time: int | None = None
    crash: str | None = None
    uptime_s: int | None = None
    session_s: int | None = None
    connect_failures: int | None = None
    rejects: dict[str, int] | None = None
    heap_free: int | None = None
    heap_largest: int | None = None
    diagnosis: list[str] | None = None
    tx: int | None = None
    rx: int | None = None
    data_paused: bool = False
    data_stops: int | None = None  # the carrier's data stops since the device's first boot
    raw: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Reply:
    """A device's answer to a command."""

    id: str | int
    ok: bool
    result: object = None
    error: str | None = None


def decode_status(payload: bytes) -> Status:
    """The status message `payload` (contract A in docs/fleet.md)."""
    payload = bytes(payload)
    if payload in (b"1", b"0"):
        return Status(online=payload == b"1")
    if len(payload) > STATUS_MAX:
        raise BrokerError(f"status: {len(payload)} bytes, more than a status ({STATUS_MAX})")
    try:
        if payload[:1] == b"{":
            raw = json.loads(payload)
        else:
            import cbor2

            raw = cbor2.loads(payload)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad message
        raise BrokerError(f"status: undecodable ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict):
        raise BrokerError(f"status: expected a map, 1 or 0, got {type(raw).__name__}")
    if raw.get("v", STATUS_SCHEMA) != STATUS_SCHEMA:
        raise BrokerError(f"status: schema {raw.get('v')!r}, this decoder reads "
                          f"{STATUS_SCHEMA}")
    on = raw.get("on", 1)
    if on not in (0, 1):
        raise BrokerError(f"status: 'on' is {on!r}, expected 1 or 0")
    cn = _part(raw, "cn", dict) or {}
    hp = _part(raw, "hp", dict) or {}
    cr = _part(raw, "cr", dict) or {}
    reset_cause = _part(raw, "rc", str)
    return Status(
        online=on == 1,
        time=_part(raw, "t", int),
        firmware=_part(raw, "fw", str),
        image=_part(raw, "im", str),
        boot_count=_part(raw, "bc", int),
        reset_cause=reset_cause,
        reboot_reasons=_counts(raw, "rr"),
        crash_time=_part(cr, "t", int, "cr.t"),
        crash=_part(cr, "e", str, "cr.e"),
        uptime_s=_part(raw, "up", int),
        session_s=_part(cn, "s", int, "cn.s"),
        connect_failures=_part(cn, "f", int, "cn.f"),
        rejects=_counts(cn, "rj", "cn.rj"),
        heap_free=_part(hp, "f", int, "hp.f"),
        heap_largest=_part(hp, "lb", int, "hp.lb"),
        diagnosis=_strings(raw, "dx"),
        tx=_part(raw, "tx", int),
        rx=_part(raw, "rx", int),
        data_paused=_part(raw, "dp", int) == 1,
        # "ds" is sent once there was a stop: totals without it say there was none yet.
        data_stops=_part(raw, "ds", int) if "ds" in raw or "tx" not in raw else 0,
        raw=raw,
    )


def decode_reply(payload: bytes) -> Reply:
    """A command reply: JSON ``{"id", "ok", "result"}`` or ``{"id", "ok": false, "error"}``."""
    return _as_reply(_reply_object(payload))


def _as_reply(raw: dict) -> Reply:
    return Reply(raw["id"], raw["ok"], raw.get("result"), raw.get("error"))


def _reply_object(payload: bytes) -> dict:
    # A reply's JSON object, checked: an id, ok, and an error string with a refusal.
    try:
        raw = json.loads(bytes(payload))
    except (ValueError, UnicodeDecodeError) as e:
        raise BrokerError(f"reply: not JSON ({e})") from None
    if not isinstance(raw, dict) or "id" not in raw or not isinstance(raw.get("ok"), bool):
        raise BrokerError("reply: expected {\"id\", \"ok\": true|false, ...}")
    if not isinstance(raw["id"], (str, int)) or isinstance(raw["id"], bool):
        raise BrokerError(f"reply: id {raw['id']!r} is not a string or integer")
    error = raw.get("error")
    if not raw["ok"] and not isinstance(error, str):
        raise BrokerError("reply: a refusal without an error string")
    return raw


def decode_replies(payload: bytes, command_ids: list[str]) -> list[Reply]:
    """The replies to the commands `command_ids` carried by one message (musket.batches.pack
    says which): a batch's reply ``{"id", "ok", "n", "r": [[index, ok, detail], ...]}`` as
    one Reply per command, in order; the reply to a lone command as itself."""
    raw = _reply_object(payload)
    reply = _as_reply(raw)
    if len(command_ids) == 1 and reply.id == command_ids[0]:
        return [reply]
    answered = raw.get("n")
    if answered is None:
        # A batch's reply the device no longer kept in full (a repeat of an old batch), or
        # one refused whole: what it says holds for each command.
        return [Reply(cid, reply.ok, None, reply.error) for cid in command_ids]
    if not isinstance(answered, int) or isinstance(answered, bool) or answered < 0:
        raise BrokerError(f"reply: n is {answered!r}, expected a count")
    details: dict[int, list] = {}
    for entry in raw.get("r") or ():
        if (not isinstance(entry, list) or not 2 <= len(entry) <= 3
                or not isinstance(entry[0], int) or not isinstance(entry[1], bool)):
            raise BrokerError(f"reply: batch entry {entry!r} is not [index, ok, detail]")
        details[entry[0]] = entry
    out = []
    for index, cid in enumerate(command_ids):
        if index >= answered:
            out.append(Reply(cid, False, None, f"not run: {reply.error or 'the batch stopped'}"))
            continue
        entry = details.get(index)
        if entry is None:
            out.append(Reply(cid, True))
        elif entry[1]:
            detail = entry[2] if len(entry) > 2 else None
            out.append(Reply(cid, True, {"after_reboot": detail} if detail else None))
        else:
            why = entry[2] if len(entry) > 2 else "failed (its reason did not fit the reply)"
            out.append(Reply(cid, False, None, str(why)))
    return out


def _part(raw: dict, key: str, kind: type, name: str | None = None):
    value = raw.get(key)
    if value is None:
        return None
    if kind is int and isinstance(value, float) and value == int(value):
        value = int(value)  # a JSON encoder may write 12.0
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BrokerError(f"status: {name or key} is {value!r}, expected {kind.__name__}")
    if kind is int and value < 0:
        raise BrokerError(f"status: {name or key} is {value}, expected 0 or more")
    return value


def _counts(raw: dict, key: str, name: str | None = None) -> dict[str, int] | None:
    value = _part(raw, key, dict, name)
    if value is None:
        return None
    for k in value:
        if not isinstance(k, str):
            raise BrokerError(f"status: {name or key} has key {k!r}, expected a string")
        _part(value, k, int, f"{name or key}.{k}")
    return {k: int(v) for k, v in value.items()}


def _strings(raw: dict, key: str) -> list[str] | None:
    value = _part(raw, key, list)
    if value is not None and not all(isinstance(v, str) for v in value):
        raise BrokerError(f"status: {key} is {value!r}, expected a list of strings")
    return value
