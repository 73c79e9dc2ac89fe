"""`musket fleet serve` as a library call: the ingest, plus the plan alerts looked at on a
timer, until SIGTERM or SIGINT (or a test's stop event)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from musket.fleet import plans
from musket.fleet.amqp import AmqpIngest, AmqpLogin
from musket.fleet.ingest import BrokerLogin, Ingest
from musket.fleet.store import FleetStore, Outcome

ALERTS_EVERY_S = 60.0  # how often this copy looks for plan thresholds crossed


async def serve(engine, login: BrokerLogin | AmqpLogin, *, group: str | None = None,
                status: bool = True, telemetry: bool = True, alerts_every_s: float = ALERTS_EVERY_S,
                stop: asyncio.Event | None = None,
                log: Callable[[str], None] = print,
                ready: Callable[[Ingest], None] | None = None) -> Outcome:
    """Runs one copy of the fleet service until `stop` is set or the process gets SIGTERM or
    SIGINT; returns what it took. The batch in hand when it stops is stored and acknowledged
    first, so a stop loses nothing and repeats nothing."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (ValueError, RuntimeError):  # not the main thread (a test runs it in one)
            pass
    if isinstance(login, AmqpLogin):  # a RabbitMQ cluster: its queues, not MQTT
        ingest = AmqpIngest(FleetStore(engine), login, log=log)
    else:
        ingest = Ingest(FleetStore(engine), login, group=group, status=status,
                        telemetry=telemetry, log=log)
    if ready is not None:
        ready(ingest)
    alerting = asyncio.ensure_future(_alerts(engine, alerts_every_s, stop, log))
    try:
        totals = await ingest.run(stop)
    finally:
        stop.set()
        await alerting
    log(f"fleet: stopped: {totals.stored} stored, {totals.duplicates} duplicates, "
        f"{sum(totals.rejected.values())} rejected")
    return totals


async def _alerts(engine, every_s: float, stop: asyncio.Event, log) -> None:
    while True:
        try:
            raised = await asyncio.to_thread(plans.raise_alerts, engine)
        except SQLAlchemyError as e:  # the database is away: the next look raises them
            log(f"fleet: alerts not checked: {str(e).splitlines()[0]}")
            raised = []
        for alert in raised:
            log(f"fleet: alert: {alert['subject']} passed {alert['threshold']} % of its plan "
                f"in {alert['month']} ({alert['used_bytes']} of "
                f"{alert['included_bytes']} bytes)")
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            pass
