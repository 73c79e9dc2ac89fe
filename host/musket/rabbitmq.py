"""RabbitMQ as musket's broker past one machine: the devices' MQTT, in RabbitMQ's terms.

Mosquitto (musket.broker) serves a fleet from one machine. A fleet larger than one broker
needs a broker that clusters; RabbitMQ does, is a Debian package, and its MQTT plugin speaks
MQTT 3.1.1 to the devices unchanged (QoS 1, persistent sessions, the will, retained status).
On RabbitMQ:

- An MQTT topic is a routing key on the ``amq.topic`` exchange with ``/`` turned into ``.``:
  ``d/<id>/t`` is ``d.<id>.t`` (device ids hold no ``.``: musket.broker.check_device_id).
- Each device is a user with a password hash in RabbitMQ's own format (salted SHA-256) and
  permissions that name it: its session queue only (``mqtt-subscription-<id>qos1``, a quorum
  queue with ``mqtt.durable_queue_type = quorum``), and topic permissions on ``amq.topic``
  that let it publish only under ``d.<id>.`` (t, e, s, r, u) and subscribe only to its
  commands (c, o). The same confinement as Mosquitto's ACL (musket.broker.render_acl).
- The fleet service does not subscribe over MQTT: every device's telemetry and replies are
  routed into one durable quorum queue (``fleet.ingest``, replicated on a majority of nodes),
  which the fleet service's copies consume as competing consumers over AMQP, acknowledging a
  message only once it is committed; status messages go to ``fleet.status``, a quorum queue
  with a single active consumer, so that one copy at a time applies them in order (see
  musket.fleet.amqp). A copy that dies leaves its unacknowledged messages to the others; a
  node that dies leaves the queues to the majority.

`render_definitions` writes all of it as a RabbitMQ definitions document (``rabbitmqctl
import_definitions FILE``, or ``load_definitions`` in rabbitmq.conf); `NodeConf` renders one
node's rabbitmq.conf.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from musket import broker

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
SALT_BYTES = 4  # RabbitMQ's hash: base64(salt + sha256(salt + password)), a 4-byte salt
VHOST = "/"
EXCHANGE = "amq.topic"  # where the MQTT plugin publishes
INGEST_QUEUE = "fleet.ingest"  # telemetry and replies: shared by the fleet service's copies
INGEST_LEAVES = ("t", "e", "r")
STATUS_QUEUE = "fleet.status"  # status: one copy at a time, in order (single active consumer)
STATUS_LEAVES = ("s",)
SERVICE_READS = ("t", "e", "s", "r", "u")  # service users over MQTT (the update server)
SERVICE_WRITES = ("c", "o")


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's stored form of a password (``rabbit_password_hashing_sha256``)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise broker.BrokerError(f"salt: {len(salt)} bytes, RabbitMQ's hash takes {SALT_BYTES}")
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def verify_password(password: str, stored: str) -> bool:
    raw = base64.b64decode(stored)
    return password_hash(password, raw[:SALT_BYTES]) == stored


def routing_key(topic_name: str) -> str:
    """The routing key the MQTT plugin gives a topic."""
    return topic_name.replace("/", ".")


def topic_of(key: str) -> str:
    """The MQTT topic a routing key came from (the fleet service reads topics)."""
    return key.replace(".", "/")


def _leaves(device: str, leaves: Iterable[str]) -> str:
    return rf"^d\.{device}\.[{''.join(leaves)}]$"


def _session_queues(user: str) -> str:
    return rf"mqtt-subscription-{re.escape(user)}qos[01]"


def device_permissions(device_id: str) -> tuple[dict, dict]:
    """(vhost permissions, topic permissions) of one device: its own session queue, and only
    its own topics, as musket.broker.DEVICE_WRITES and DEVICE_READS list them."""
    user = broker.check_device_id(device_id)
    own = _session_queues(user)
    vhost = {"user": user, "vhost": VHOST, "configure": f"^{own}$",
             "write": rf"^(amq\.topic|{own})$", "read": rf"^(amq\.topic|{own})$"}
    topic = {"user": user, "vhost": VHOST, "exchange": EXCHANGE,
             "write": _leaves(re.escape(user), broker.DEVICE_WRITES),
             "read": _leaves(re.escape(user), broker.DEVICE_READS)}
    return vhost, topic


def service_permissions(user: str) -> tuple[dict, dict]:
    """A fleet service's user: the ingest queue (AMQP) and, over MQTT, every device's uplink
    topics to read and their command topics to write (the update server)."""
    own = _session_queues(user)
    vhost = {"user": user, "vhost": VHOST, "configure": rf"^(fleet\..+|{own})$",
             "write": rf"^(amq\.topic|fleet\..+|{own})$",
             "read": rf"^(amq\.topic|fleet\..+|{own})$"}
    topic = {"user": user, "vhost": VHOST, "exchange": EXCHANGE,
             "write": _leaves(r"[^.]+", SERVICE_WRITES),
             "read": _leaves(r"[^.]+", SERVICE_READS)}
    return vhost, topic


def render_definitions(devices: Iterable[tuple[str, str]],
                       services: Iterable[tuple[str, str]] = ()) -> dict:
    """A definitions document: (user, RabbitMQ password hash) for each device and service
    user; the fleet's two queues and their bindings. Importing it again updates what
    changed."""
    users, permissions, topic_permissions = [], [], []
    for kind, entries in (("device", devices), ("service", services)):
        for user, stored in entries:
            users.append({"name": user, "password_hash": stored,
                          "hashing_algorithm": HASHING_ALGORITHM, "tags": ""})
            vhost, topic = (device_permissions if kind == "device" else
                            service_permissions)(user)
            permissions.append(vhost)
            topic_permissions.append(topic)
    return {
        "users": users,
        "vhosts": [{"name": VHOST}],
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "queues": [
            {"name": INGEST_QUEUE, "vhost": VHOST, "durable": True, "auto_delete": False,
             "arguments": {"x-queue-type": "quorum"}},
            {"name": STATUS_QUEUE, "vhost": VHOST, "durable": True, "auto_delete": False,
             "arguments": {"x-queue-type": "quorum", "x-single-active-consumer": True}}],
        "exchanges": [],
        "bindings": [{"source": EXCHANGE, "vhost": VHOST, "destination": queue,
                      "destination_type": "queue", "routing_key": f"d.*.{leaf}",
                      "arguments": {}}
                     for queue, leaves in ((INGEST_QUEUE, INGEST_LEAVES),
                                           (STATUS_QUEUE, STATUS_LEAVES))
                     for leaf in leaves],
    }


@dataclass(frozen=True)
class NodeConf:
    """One node's rabbitmq.conf: its AMQP and MQTT listeners, the cluster's members (each
    node finds the others from this list: classic peer discovery), quorum session queues."""

    amqp_port: int
    mqtt_port: int
    cluster: tuple[str, ...]  # every member's node name, e.g. rabbit-1@localhost
    address: str = "127.0.0.1"

    def render(self) -> str:
        members = "\n".join(f"cluster_formation.classic_config.nodes.{i} = {name}"
                            for i, name in enumerate(self.cluster, 1))
        return f"""\
# A node of musket's clustered broker (musket.rabbitmq.NodeConf).
listeners.tcp.1 = {self.address}:{self.amqp_port}
mqtt.listeners.tcp.1 = {self.address}:{self.mqtt_port}
# Every client logs in; the definitions hold each device's user and permissions.
mqtt.allow_anonymous = false
# Devices' persistent sessions (their command queues) are replicated like the ingest queue.
mqtt.durable_queue_type = quorum
cluster_formation.peer_discovery_backend = classic_config
{members}
"""
