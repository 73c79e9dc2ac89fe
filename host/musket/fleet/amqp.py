"""The fleet service's intake from a RabbitMQ cluster (musket.rabbitmq): the broker's own
competing consumers over AMQP, in place of MQTT shared subscriptions.

The devices publish over MQTT to any node; RabbitMQ routes their telemetry and replies into
the quorum queue ``fleet.ingest`` and their status messages into ``fleet.status``. Every copy
of the fleet service consumes both:

- ``fleet.ingest`` is shared: each message goes to one copy. A copy acknowledges a batch only
  after FleetStore.take committed it; a copy that dies leaves its unacknowledged messages to
  the others, and the tables' unique keys make a second delivery a counted duplicate.
- ``fleet.status`` has a single active consumer (the queue's ``x-single-active-consumer``):
  one copy applies every device's online/offline sequence, in order; when it dies the broker
  hands the queue, and its unacknowledged messages, to another copy.

Each queue is read on a channel of its own, so acknowledging a batch with ``multiple`` never
acknowledges the other queue's messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from musket import rabbitmq
from musket.errors import Unreachable
from musket.fleet.store import FleetStore, Incoming, Outcome

BATCH_MAX = 200  # messages taken in one transaction; also the consumer's prefetch
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.2, 10.0  # back-off while no node answers


@dataclass(frozen=True)
class AmqpLogin:
    """The cluster's nodes (host, AMQP port), tried in turn, and the service user."""

    nodes: tuple[tuple[str, int], ...]
    user: str
    password: str = field(repr=False)


class AmqpIngest:
    """One copy of the fleet service's intake from the cluster, run until `stop` is set."""

    def __init__(self, store: FleetStore, login: AmqpLogin, *, batch_max: int = BATCH_MAX,
                 log: Callable[[str], None] = print) -> None:
        self.store = store
        self.login = login
        self.batch_max = batch_max
        self.log = log
        self.totals = Outcome()
        self.batches = 0
        self.subscribed = asyncio.Event()  # set while consuming, for tests and logs

    async def run(self, stop: asyncio.Event) -> Outcome:
        import aio_pika
        import aiormq

        delay = RECONNECT_MIN_S
        turn = 0
        while not stop.is_set():
            host, port = self.login.nodes[turn % len(self.login.nodes)]
            try:
                connection = await aio_pika.connect(host=host, port=port,
                                                    login=self.login.user,
                                                    password=self.login.password)
            except (OSError, aiormq.exceptions.AMQPError) as e:
                turn += 1
                self.log(f"fleet: node {host}:{port} unreachable ({e}); next in {delay:.1f} s")
                await _pause(stop, delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_MIN_S
            try:
                async with connection:
                    await self._consume(connection, stop, host, port)
            except (OSError, aiormq.exceptions.AMQPError, _DatabaseAway) as e:
                self.subscribed.clear()
                self.store.broker_lost_at = datetime.now(UTC)
                turn += 1
                if not stop.is_set():
                    self.log(f"fleet: node {host}:{port} lost ({e}); trying the next")
                    await _pause(stop, RECONNECT_MIN_S)
        return self.totals

    async def _consume(self, connection, stop: asyncio.Event, host: str, port: int) -> None:
        workers = []
        for name in (rabbitmq.INGEST_QUEUE, rabbitmq.STATUS_QUEUE):
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.batch_max)
            queue = await channel.get_queue(name, ensure=True)
            inbox: asyncio.Queue = asyncio.Queue()
            await queue.consume(inbox.put)
            workers.append(asyncio.ensure_future(self._batches(inbox)))
        self.subscribed.set()
        self.log(f"fleet: consuming {rabbitmq.INGEST_QUEUE} and {rabbitmq.STATUS_QUEUE} on "
                 f"{host}:{port} as {self.login.user}")
        closed = asyncio.ensure_future(_closed(connection))
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([*workers, closed, stopping],
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in (*workers, closed, stopping):
            task.cancel()
        await asyncio.gather(*workers, closed, stopping, return_exceptions=True)
        for task in done:
            if task is not stopping and not task.cancelled() and task.exception():
                raise task.exception()

    async def _batches(self, inbox: asyncio.Queue) -> None:
        while True:
            batch = [await inbox.get()]
            while len(batch) < self.batch_max and not inbox.empty():
                batch.append(inbox.get_nowait())
            # Shielded: a stop waits for the batch in hand to be stored and acknowledged.
            await asyncio.shield(self._flush(batch))

    async def _flush(self, batch) -> None:
        incoming = [Incoming(rabbitmq.topic_of(m.routing_key), bytes(m.body)) for m in batch]
        try:
            outcome = await asyncio.to_thread(self.store.take, incoming)
        except Unreachable as e:
            # Nothing acknowledged: the channel's end gives the batch back to the queue.
            self.log(f"fleet: database unreachable ({e}); the batch goes back to the queue")
            raise _DatabaseAway(str(e)) from None
        await batch[-1].ack(multiple=True)
        self.batches += 1
        self.totals.add(outcome)
        for problem in outcome.problems:
            self.log(f"fleet: rejected {problem}")


class _DatabaseAway(Exception):
    pass


async def _closed(connection) -> None:
    # Returns when the connection to the node ends (the node died or closed it).
    closing = asyncio.get_running_loop().create_future()
    connection.close_callbacks.add(lambda *args: closing.done() or closing.set_result(None))
    await closing
    raise ConnectionResetError("the node closed the connection")


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
