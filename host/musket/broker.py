"""The broker side of the device uplink: topic scheme, Mosquitto credentials and ACL, and the
decoder for the devices' telemetry.

Topics (every one under the device's prefix ``d/<device_id>/``, so one ACL rule per device
confines it):

=====  ==========================  =========  ===========================================
leaf   what                        direction  payload
=====  ==========================  =========  ===========================================
``t``  telemetry: readings         up, QoS 1  telemetry message (CBOR, or JSON for debug)
``e``  telemetry with counter      up, QoS 1  the same, holding at least one counter event
       events
``s``  status, retained            up, QoS 1  ``1`` online (sent on connect), ``0`` offline
                                              (the will: the broker sends it when the device
                                              vanishes)
``c``  commands                    down       JSON ``{"id", "op", ...}``
``r``  command replies             up, QoS 1  JSON ``{"id", "ok", "result"|"error"}``
``o``  OTA notices (reserved)      down       --
=====  ==========================  =========  ===========================================

Provisioning writes the device's credentials with :func:`hash_password` (Mosquitto 2's
``$7$`` PBKDF2-SHA512 format, as ``mosquitto_passwd`` writes it) and the broker's ACL with
:func:`render_acl`; nothing else in musket re-implements either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from musket.errors import BadInput

PREFIX = "d"
LEAVES = {"t": "telemetry", "e": "events", "s": "status", "c": "commands", "r": "replies",
          "o": "ota"}
DEVICE_WRITES = ("t", "e", "s", "r")  # what a device may publish under its own prefix
DEVICE_READS = ("c", "o")  # what it may subscribe to
SCHEMA_VERSION = 1
EVENT_KINDS = ("use", "service", "adjust")

# Mosquitto 2's password hash: "$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>".
HASH_ITERATIONS = 101  # mosquitto_passwd's default
SALT_BYTES = 12
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class BrokerError(BadInput):
    """Bad broker input: an unusable device id, a damaged password hash, an undecodable
    telemetry message. The message says which."""


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if it can name a device in topics and the broker's files."""
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise BrokerError(f"device id {device_id!r}: 1-64 letters, digits, '_' or '-'")
    return device_id


def device_prefix(device_id: str) -> str:
    return f"{PREFIX}/{check_device_id(device_id)}/"


def topic(device_id: str, leaf: str) -> str:
    """The topic of ``leaf`` (a key of LEAVES) for ``device_id``: ``topic("a1", "c")`` is
    ``"d/a1/c"``."""
    if leaf not in LEAVES:
        raise BrokerError(f"unknown topic leaf {leaf!r} (one of: {', '.join(LEAVES)})")
    return device_prefix(device_id) + leaf


def parse_topic(name: str) -> tuple[str, str]:
    """``"d/a1/e"`` -> ``("a1", "e")``; BrokerError for a topic outside the scheme."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != PREFIX or parts[2] not in LEAVES:
        raise BrokerError(f"topic {name!r} is not d/<device_id>/<leaf>")
    return check_device_id(parts[1]), parts[2]


# -- credentials -------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None,
                  iterations: int = HASH_ITERATIONS) -> str:
    """Mosquitto 2's ``$7$`` hash of ``password`` (random salt unless given)."""
    if not password:
        raise BrokerError("empty password")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return "$7${}${}${}".format(iterations, base64.b64encode(salt).decode(),
                                base64.b64encode(digest).decode())


def verify_password(password: str, encoded: str) -> bool:
    """True if ``encoded`` (a ``$7$`` hash) is the hash of ``password``."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        raise BrokerError("not a Mosquitto $7$ password hash")
    try:
        salt = base64.b64decode(parts[3], validate=True)
        want = base64.b64decode(parts[4], validate=True)
    except ValueError as e:
        raise BrokerError(f"damaged $7$ password hash: {e}") from None
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(got, want)


def new_password(nbytes: int = 18) -> str:
    """A fresh random password for a device (24 URL-safe characters by default)."""
    return base64.urlsafe_b64encode(os.urandom(nbytes)).decode().rstrip("=")


def render_password_file(credentials: dict[str, str]) -> str:
    """A Mosquitto ``password_file`` for {user: password} (passwords hashed, never stored)."""
    return render_hashed_password_file(
        (user, hash_password(password)) for user, password in credentials.items())


def render_hashed_password_file(entries: Iterable[tuple[str, str]]) -> str:
    """A Mosquitto ``password_file`` from (user, hash) pairs, such as a registry keeps: the
    broker needs only the hashes, so the secrets need not exist anywhere."""
    lines = []
    for user, encoded in sorted(entries):
        if ":" in user or not user:
            raise BrokerError(f"user name {user!r} cannot go in a password file")
        lines.append(f"{user}:{encoded}")
    return "\n".join(lines) + "\n"


def render_acl(device_ids: Iterable[str], service_users: Iterable[str] = ()) -> str:
    """A Mosquitto ``acl_file``: each device may write only its own up-topics and read only its
    own down-topics; each service user reads and writes every device's topics."""
    out = ["# musket: one block per device, confined to its d/<device_id>/ prefix"]
    for device_id in sorted(set(device_ids)):
        prefix = device_prefix(device_id)
        out.append(f"\nuser {device_id}")
        out += [f"topic write {prefix}{leaf}" for leaf in DEVICE_WRITES]
        out += [f"topic read {prefix}{leaf}" for leaf in DEVICE_READS]
    for user in sorted(set(service_users)):
        out.append(f"\nuser {user}\ntopic readwrite {PREFIX}/#")
    return "\n".join(out) + "\n"


# -- telemetry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    seq: int
    time: int
    kind: str
    name: str
    delta: float
    total: float
    info: str | None = None


@dataclass(frozen=True)
class Reading:
    rseq: int
    time: int
    values: dict


@dataclass(frozen=True)
class Telemetry:
    schema: int
    mseq: int
    time: int
    readings: list[Reading]
    events: list[Event]


def decode_telemetry(payload: bytes) -> Telemetry:
    """Decode a device's telemetry message, CBOR or its JSON form (see app/uplink/codec.py)."""
    try:
        if payload[:1] == b"{":
            d = json.loads(payload)
            raw = [d["v"], d["n"], d["t"], d["e"], d["r"]]
        else:
            import cbor2

            raw = cbor2.loads(payload)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad message
        raise BrokerError(f"telemetry: undecodable ({type(e).__name__}: {e})") from None
    try:
        schema, mseq, t0, events, readings = raw
        if schema != SCHEMA_VERSION:
            raise BrokerError(f"telemetry: schema {schema!r}, this decoder reads "
                              f"{SCHEMA_VERSION}")
        out_r = []
        if readings:
            first = readings[0]
            for i, (dt, values) in enumerate(readings[1:]):
                out_r.append(Reading(first + i, t0 + dt, dict(values)))
        out_e = []
        for ev in events:
            seq, dt, kind, name, delta, total = ev[:6]
            if isinstance(kind, int):
                kind = EVENT_KINDS[kind]
            out_e.append(Event(seq, t0 + dt, kind, name, delta, total,
                               ev[6] if len(ev) > 6 else None))
        return Telemetry(schema, mseq, t0, out_r, out_e)
    except BrokerError:
        raise
    except (TypeError, ValueError, IndexError, KeyError) as e:
        raise BrokerError(f"telemetry: not schema {SCHEMA_VERSION} ({e})") from None


@dataclass
class DeviceStream:
    """What a subscriber learns from one device's messages, duplicates dropped: events and
    readings in seq order, and the message sequence numbers it never saw (gaps)."""

    events: list[Event] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    duplicates: int = 0
    last_mseq: int = 0
    gaps: list[int] = field(default_factory=list)

    def add(self, msg: Telemetry) -> None:
        if msg.mseq > self.last_mseq + 1:
            self.gaps += range(self.last_mseq + 1, msg.mseq)
        self.last_mseq = max(self.last_mseq, msg.mseq)
        last_e = self.events[-1].seq if self.events else 0
        for ev in msg.events:
            if ev.seq <= last_e:
                self.duplicates += 1
            else:
                self.events.append(ev)
                last_e = ev.seq
        last_r = self.readings[-1].rseq if self.readings else 0
        for r in msg.readings:
            if r.rseq <= last_r:
                self.duplicates += 1
            else:
                self.readings.append(r)
                last_r = r.rseq
