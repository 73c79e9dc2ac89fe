"""The fleet service's MQTT side: subscribe, take messages in batches, acknowledge each only
after its batch is committed.

One copy subscribes to ``d/+/t``, ``d/+/e``, ``d/+/r`` and ``d/+/s`` with a persistent
session (MQTT 5: clean start off, a session that never expires) under a client id of its own,
and acknowledges (PUBACK) a message only once the transaction that stored it has committed.
So a copy killed between the two leaves its unacknowledged messages in its session, the broker
keeps whatever arrives while it is away, and sends both when that copy connects again; the
tables' unique keys make a second delivery a counted duplicate.

Several copies share the load through MQTT shared subscriptions (``--group NAME``:
``$share/NAME/d/+/t``, ``.../e``, ``.../r``): the broker hands each message to one member of
the group, and keeps a member's unacknowledged and queued messages for it while it is away.
One caveat, measured with Mosquitto 2.0.11 (tests/fleet/test_ingest.py): the broker does not
restore shared subscriptions from its persistence file, so after a broker restart the
messages published before a member has subscribed again are dropped; plain subscriptions (one
copy, no group) are restored and lose nothing. Hence a group is opt-in, and a broker that
clusters (docs/fleet.md) must keep shared subscriptions across restarts.

Status (``d/<id>/s``) is not shared: exactly one copy, the status owner (``--status``, the
default; run the others with ``--no-status``), subscribes to it. A retained message is not
sent to a shared subscription when it subscribes, so a group member would never learn of
devices that connected before it; and a device's online/offline sequence is only right when
one consumer applies it in order (its sessions open and close on it). A status is one
message per session start and per health interval per device: one copy takes them all. After
an outage, though, every device's reconnection sends one at once; a copy that takes only the
statuses (``--no-telemetry``) keeps them from queueing in front of its share of the backlog's
telemetry, which the other copies then take.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from musket.errors import BadInput, Unreachable
from musket.fleet.store import FleetStore, Incoming, Outcome

SHARED_LEAVES = ("t", "e", "r")  # what a group of copies shares
STATUS_TOPIC = "d/+/s"
# Messages taken in one transaction. The copy's Receive Maximum (MQTT 5) lets the broker keep
# two batches unacknowledged in flight to it, so the next batch arrives while one is stored;
# without it Mosquitto sends an MQTT 3.1.1 client 20 at a time (max_inflight_messages, a
# setting for every client of the broker, devices included). After an outage the whole
# fleet's backlog waits in the broker: the fewer and bigger the transactions, the faster it
# drains (docs/fleet-scale.md#figures).
BATCH_MAX = 500
RECEIVE_MAXIMUM = 2 * BATCH_MAX
SESSION_NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5's Session Expiry Interval for "kept for good"
KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.2, 10.0  # back-off while the broker is away


@dataclass(frozen=True)
class BrokerLogin:
    """Where and as whom the service connects. The password never appears in repr or logs."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    client_id: str
    ca_file: str | None = None


class Ingest:
    """One copy of the fleet service's ingest, run until `stop` is set."""

    def __init__(self, store: FleetStore, login: BrokerLogin, *, group: str | None = None,
                 status: bool = True, telemetry: bool = True, batch_max: int = BATCH_MAX,
                 log: Callable[[str], None] = print) -> None:
        if not (status or telemetry):
            raise BadInput("a copy of the fleet service takes statuses, telemetry or both")
        self.store = store
        self.login = login
        self.status = status
        self.batch_max = batch_max
        self.log = log
        share = f"$share/{group}/" if group else ""
        self.topics = [f"{share}d/+/{leaf}" for leaf in SHARED_LEAVES] if telemetry else []
        if status:
            self.topics.append(STATUS_TOPIC)
        self.totals = Outcome()
        self.batches = 0
        self.subscribed = asyncio.Event()  # set on each (re)subscription, for tests and logs
        self._flushing = None  # the batch being stored and acknowledged, if any

    async def run(self, stop: asyncio.Event) -> Outcome:
        """Consumes until `stop` is set; a lost broker is reconnected to, with back-off.
        The batch being stored when `stop` is set is finished and acknowledged first."""
        import aiomqtt

        delay = RECONNECT_MIN_S
        while not stop.is_set():
            client = self._client()
            try:
                async with client:
                    delay = RECONNECT_MIN_S
                    for topic_filter in self.topics:
                        await client.subscribe(topic_filter, options=_options(topic_filter))
                    self.subscribed.set()
                    self.log(f"fleet: {self.login.client_id} subscribed to "
                             f"{', '.join(self.topics)}")
                    consume = asyncio.ensure_future(self._consume(client))
                    stopping = asyncio.ensure_future(stop.wait())
                    await asyncio.wait((consume, stopping),
                                       return_when=asyncio.FIRST_COMPLETED)
                    stopping.cancel()
                    if not consume.done():
                        consume.cancel()
                        await asyncio.gather(consume, return_exceptions=True)
                        if self._flushing is not None:  # the batch in hand: stored, acked
                            await asyncio.gather(self._flushing, return_exceptions=True)
                    else:
                        consume.result()  # raises the MqttError that ended it
            except aiomqtt.MqttError as e:
                self.subscribed.clear()
                self.store.broker_lost_at = datetime.now(UTC)
                if stop.is_set():
                    break
                self.log(f"fleet: broker {self.login.host}:{self.login.port} lost or "
                         f"unreachable ({e}); again in {delay:.1f} s")
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, RECONNECT_MAX_S)
        return self.totals

    def _client(self):
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        tls = ssl.create_default_context(cafile=self.login.ca_file) if self.login.ca_file \
            else None
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        connect.ReceiveMaximum = max(RECEIVE_MAXIMUM, 2 * self.batch_max)
        client = aiomqtt.Client(
            self.login.host, self.login.port, username=self.login.user,
            password=self.login.password, identifier=self.login.client_id,
            protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=connect,
            keepalive=KEEPALIVE_S, tls_context=tls)
        # Manual acknowledgement, set before connecting so that no message of the session's
        # backlog is acknowledged before it is stored. aiomqtt 2 does not expose paho's
        # switch; the paho client it wraps is its `_client`.
        client._client.manual_ack_set(True)  # noqa: SLF001
        return client

    async def _consume(self, client) -> None:
        batch = []
        async for message in client.messages:
            batch.append(message)
            if len(batch) >= self.batch_max or len(client.messages) == 0:
                # Shielded: a stop lets the batch be stored and acknowledged (run() waits
                # for it) rather than leaving it half done (it would be redelivered, then
                # dropped as a duplicate, but there is no need).
                self._flushing = asyncio.ensure_future(self._flush(client, batch))
                await asyncio.shield(self._flushing)
                self._flushing = None
                batch = []

    async def _flush(self, client, batch) -> None:
        incoming = [Incoming(m.topic.value, bytes(m.payload), bool(m.retain)) for m in batch]
        try:
            outcome = await asyncio.to_thread(self.store.take, incoming)
        except Unreachable as e:
            # The database is away: nothing is acknowledged, so the broker keeps the batch;
            # reconnecting makes it send the batch again.
            self.log(f"fleet: database unreachable ({e}); the batch stays with the broker")
            await asyncio.sleep(RECONNECT_MIN_S)
            raise _database_away(e) from None
        for m in batch:
            if m.qos:
                client._client.ack(m.mid, m.qos)  # noqa: SLF001
        self.batches += 1
        self.totals.add(outcome)
        for problem in outcome.problems:
            self.log(f"fleet: rejected {problem}")
        if outcome.duplicates:
            self.log(f"fleet: {outcome.duplicates} duplicate(s) dropped")


def _options(topic_filter: str):
    # QoS 1 for all. The retained statuses only when the subscription is new to the session:
    # a copy that comes back to its persistent session (subscribing again, as it does at each
    # connection) is not handed every device's retained status once more, which after an
    # outage would double what the status owner has to take. A new session (the copy's first,
    # or one the broker lost) still gets them all: that is how it learns of devices that
    # connected before it.
    from paho.mqtt.subscribeoptions import SubscribeOptions

    if topic_filter != STATUS_TOPIC:
        return SubscribeOptions(qos=1)
    return SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)


def _database_away(e: Exception):
    import aiomqtt

    return aiomqtt.MqttError(f"database unreachable: {e}")
