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
``s``  status, retained            up, QoS 1  the online status map (sent on connect; CBOR, see
                                              docs/uplink.md "The status message"; older
                                              firmware: ``1``), ``0`` offline
                                              (the will: the broker sends it when the device
                                              vanishes)
``c``  commands                    down       JSON ``{"id", "op", ...}``
``r``  command replies             up, QoS 1  JSON ``{"id", "ok", "result"|"error"}``
``o``  OTA notices (reserved)      down       --
=====  ==========================  =========  ===========================================

Provisioning writes the device's credentials with :func:`hash_password` (Mosquitto 2's
``$7$`` PBKDF2-SHA512 format, as ``mosquitto_passwd`` writes it) and the broker's ACL with
:func:`render_acl`; nothing else in musket re-implements either. :class:`MosquittoConf`
renders the broker's configuration around them: a TLS listener, no anonymous clients, the
client id bound to the user name, and packets capped at what the devices send and take (the
figures derive from the device's MQTT buffers, below).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from musket.errors import BadInput

PREFIX = "d"
LEAVES = {"t": "telemetry", "e": "events", "s": "status", "c": "commands", "r": "replies",
          "o": "ota"}
DEVICE_WRITES = ("t", "e", "s", "r", "u")  # what a device may publish under its own prefix
DEVICE_READS = ("c", "o")  # what it may subscribe to
SCHEMA_VERSION = 1
EVENT_KINDS = ("use", "service", "adjust")

# Mosquitto 2's password hash: "$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>".
HASH_ITERATIONS = 101  # mosquitto_passwd's default
SALT_BYTES = 12
DEVICE_ID_MAX = 64  # characters (firmware/app/config.py's device_id takes as many)
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,%d}" % DEVICE_ID_MAX)


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


# -- packet sizes: what a device takes and sends --------------------------------------------
#
# The device's MQTT client (firmware/app/uplink/mqtt.py) has one receive and one send buffer,
# made once at boot in firmware/app/uplink/service.py. Every size limit below derives from
# these two numbers; tests/uplink/test_broker_hardening.py reads them from the firmware and
# fails when they change without these.
DEVICE_RX_SIZE = 320  # _RX_SIZE: the largest packet body (what follows the fixed header) kept
DEVICE_TX_SIZE = 448  # _TX_SIZE: the largest whole packet the device sends
# A batch of commands (musket.batches) is read by the device a line at a time, so it may be
# larger than the receive buffer: BATCH_BYTES of payload (firmware/app/uplink/batch.py).
DEVICE_BATCH_BYTES = 1280
# The device subscribes to its commands at QoS 1, so a command arrives with a packet id
# unless the sender publishes it at QoS 0.
COMMAND_QOS = 1
# The device's command record keeps the replies of its newest commands on flash until the
# broker acknowledges them (_REPLIES_KEPT in firmware/app/uplink/commands.py): a reply goes
# again after a reconnect or a reboot only while it is kept there.
DEVICE_REPLIES_KEPT = 4
# Commands the broker sends a device ahead of its PUBACKs (max_inflight_messages, for MQTT
# 3.1.1 clients; an MQTT 5 client such as the fleet service sets its own Receive Maximum).
# The broker's PUBACK for a reply reaches the device behind the commands already in flight,
# each of which the device records (with its reply) first, so up to DEVICE_REPLIES_KEPT - 1
# would do. But Mosquitto 2.0.11 (Debian 12's) sends a client as many new messages as the
# setting at each PUBACK it receives, so with more than one the commands in flight grow
# through a burst, and push replies out of the record before their PUBACKs (a session cut
# then loses them). One is kept on every version, and delivers in order.
COMMANDS_IN_FLIGHT = 1


def _length_bytes(body: int) -> int:
    """Bytes of MQTT's remaining-length field for a body of `body` bytes."""
    return 1 if body < 128 else 2 if body < 16384 else 3 if body < 2097152 else 4


def publish_body_size(topic_name: str, payload_size: int, qos: int = COMMAND_QOS) -> int:
    """A PUBLISH's body (its remaining length): topic length and topic, the packet id at QoS 1
    or 2, the payload."""
    return 2 + len(topic_name.encode()) + (2 if qos else 0) + payload_size


def publish_packet_size(topic_name: str, payload_size: int, qos: int = COMMAND_QOS) -> int:
    """A whole PUBLISH as it crosses the network: fixed header and body."""
    body = publish_body_size(topic_name, payload_size, qos)
    return 1 + _length_bytes(body) + body


def mosquitto_size(body: int) -> int:
    """A packet's size as Mosquitto 2.0 checks it against ``max_packet_size``: the type byte
    and the body, without the remaining-length bytes (``remaining_length + 1`` in
    lib/packet_mosq.c)."""
    return 1 + body


def command_payload_max(device_id: str, qos: int = COMMAND_QOS) -> int:
    """The largest command payload the device `device_id` takes: the receive buffer holds the
    PUBLISH's body; a larger command is read past and answered ``too large``."""
    return DEVICE_RX_SIZE - publish_body_size(topic(device_id, "c"), 0, qos)


def check_command_size(device_id: str, payload: bytes, qos: int = COMMAND_QOS) -> bytes:
    """Return `payload` if the device takes it as a command; BrokerError if it is larger (it
    would cross the device's paid link only to be refused there)."""
    limit = command_payload_max(device_id, qos)
    if len(payload) > limit:
        raise BrokerError(f"command of {len(payload)} bytes for {device_id}: the device takes "
                          f"at most {limit} (its receive buffer is {DEVICE_RX_SIZE} bytes)")
    return payload


# The largest command payload every device takes, whatever its id (the longest id allowed).
COMMAND_PAYLOAD_MAX = command_payload_max("x" * DEVICE_ID_MAX)
# The body of the largest packet a device sends (a telemetry message or a command reply).
DEVICE_TX_BODY_MAX = max(b for b in range(DEVICE_TX_SIZE) if 1 + _length_bytes(b) + b
                         <= DEVICE_TX_SIZE)
# Mosquitto's max_packet_size applies to every packet any client sends the broker (one global
# setting in Mosquitto 2.0), so it must let the devices' own largest packets through. It is
# the largest of what a device sends and what it takes (a batch, for the longest device id):
# a message bigger than this ends the sender's connection and never reaches a device; one
# between the device's limit and this still crosses the link and is refused by the device
# (check_command_size and musket.batches.pack refuse it before it is published).
MAX_PACKET_SIZE = max(mosquitto_size(DEVICE_TX_BODY_MAX), mosquitto_size(DEVICE_RX_SIZE),
                      mosquitto_size(publish_body_size("d/%s/c" % ("x" * DEVICE_ID_MAX),
                                                       DEVICE_BATCH_BYTES)))


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


# -- the broker's configuration --------------------------------------------------------------

MQTT_PORT = 1883
MQTTS_PORT = 8883
# Where Debian's mosquitto package keeps a broker's certificate and key.
DEFAULT_CERTFILE = "/etc/mosquitto/certs/server.crt"
DEFAULT_KEYFILE = "/etc/mosquitto/certs/server.key"
DEFAULT_PERSISTENCE = "/var/lib/mosquitto/"
TLS_VERSION_MIN = "tlsv1.2"


@dataclass(frozen=True)
class MosquittoConf:
    """A whole Mosquitto 2.0 configuration (``mosquitto -c FILE``) for musket's devices.

    One listener, TLS unless ``tls`` is off (plain MQTT: user names and passwords then cross
    the network in clear). Every path is absolute: the broker reads them from its own working
    directory. ``port`` defaults to 8883 with TLS, 1883 without."""

    password_file: str
    acl_file: str
    tls: bool = True
    certfile: str = DEFAULT_CERTFILE
    keyfile: str = DEFAULT_KEYFILE
    port: int | None = None
    address: str | None = None  # listen on this address only (default: every interface)
    persistence_location: str = DEFAULT_PERSISTENCE

    def __post_init__(self) -> None:
        port = self.port
        if port is None:
            port = MQTTS_PORT if self.tls else MQTT_PORT
            object.__setattr__(self, "port", port)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise BrokerError(f"listener port {port!r}: out of range (1 to 65535)")
        if self.address is not None and not re.fullmatch(r"[0-9A-Za-z.:_-]+", self.address):
            raise BrokerError(f"listener address {self.address!r}: expected an IP address or "
                              "a host name")
        paths = {"password_file": self.password_file, "acl_file": self.acl_file,
                 "persistence_location": self.persistence_location}
        if self.tls:
            paths.update(certfile=self.certfile, keyfile=self.keyfile)
        for name, path in paths.items():
            if not isinstance(path, str) or not posixpath.isabs(path) or any(
                    c in path for c in "\r\n\0"):
                raise BrokerError(f"{name} {path!r}: expected an absolute path on one line")

    def render(self) -> str:
        listener = f"listener {self.port}" + (f" {self.address}" if self.address else "")
        if self.tls:
            listen = f"""\
# Devices and the fleet service connect here, with TLS: the broker's certificate
# (certfile, with any intermediate CA after it) must chain to the CA that provisioning
# writes to each unit (/ca.pem). No cafile: the units hold that CA already, and a
# listener with one sends it in every handshake (about 340 bytes a session over the air).
{listener}
certfile {self.certfile}
keyfile {self.keyfile}
tls_version {TLS_VERSION_MIN}"""
        else:
            listen = f"""\
# Plain MQTT, chosen with --no-tls: user names, passwords and every message cross
# the network in clear.
{listener}"""
        return f"""\
# Mosquitto 2.0 configuration for musket's devices, written by `musket registry
# export-broker`: the broker's whole configuration (mosquitto -c FILE).

# Every client logs in: each device with its own credentials (password_file), confined
# to its own d/<device_id>/ topics (acl_file).
allow_anonymous false
password_file {self.password_file}
acl_file {self.acl_file}

# The largest packet a client may send, as Mosquitto counts it (type byte and body).
# The setting is global, so it admits a device's largest packets (a batch of commands of
# {DEVICE_BATCH_BYTES} bytes, {DEVICE_TX_SIZE} bytes of telemetry); a bigger one, such as a
# 100 KB command, ends the sender's connection and reaches no device. A device takes commands
# of up to {COMMAND_PAYLOAD_MAX} bytes, alone or in a batch.
max_packet_size {MAX_PACKET_SIZE}

# One command at a time to a device (and in order): the device keeps the reply to each of
# its {DEVICE_REPLIES_KEPT} newest commands on flash until the broker acknowledges it, and a
# burst of commands must not push a reply out before then. The broker queues the rest.
# (For MQTT 3.1.1 clients; an MQTT 5 client, as the fleet service is, sets its own.)
max_inflight_messages {COMMANDS_IN_FLIGHT}

# Devices keep their sessions (subscriptions, queued commands) across restarts.
persistence true
persistence_location {self.persistence_location}

{listen}
# The client id is the user name the client logged in with: no client can take
# another's id, knock it off or clear its stored session and queued commands.
# So each copy of the fleet service needs a user name of its own.
use_username_as_clientid true
"""


def write_text_atomically(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
    """Writes `text` to a temporary name beside `path` and renames it into place, so a broker
    reloading meanwhile never reads half a file."""
    tmp = f"{os.fspath(path)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # whatever the umask: a password file stays its owner's
        os.replace(tmp, path)
    except OSError as e:
        raise BrokerError(f"{os.fspath(path)}: cannot write: {e.strerror}") from None


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
