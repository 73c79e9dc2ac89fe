"""`musket sim fleet`: many lightweight virtual devices at once against a broker (the library is
musket.simfleet; the devices are sim/swarm.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from musket.cli_params import duration as _duration
from musket.cli_registry import _actor_options, _registry_option


def _duration_or_none(ctx, param, value):
    return None if value is None else _duration(ctx, param, value)


def _address(ctx, param, value):
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


@click.command("fleet")
@click.option("--devices", "count", type=click.IntRange(1, 100000), default=100,
              show_default=True, help="How many devices.")
@click.option("--broker", "address", required=True, callback=_address, metavar="HOST:PORT",
              help="The broker the devices connect to (plain MQTT).")
@_registry_option
@_actor_options
@click.option("--for", "span", default="1m", show_default=True, callback=_duration,
              help="How long to run, in wall time (30s, 10m, 1h).")
@click.option("--speed", type=click.FloatRange(min=0.001), default=1.0, show_default=True,
              help="Virtual seconds per wall second: 60 runs an hour of the fleet's life "
                   "in a minute.")
@click.option("--backlog", default=None, callback=_duration_or_none,
              help="What each device has waiting when it starts, as after an outage this long "
                   "(default: each device met somewhere in its batching cycle).")
@click.option("--brews-per-day", type=click.FloatRange(min=0), default=20, show_default=True)
@click.option("--processes", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Processes the devices are spread over (one per core).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default="sim-fleet",
              show_default=True,
              help="Keeps the devices' credentials (readable by you only) for the next run.")
@click.option("--json", "as_json", is_flag=True, help="Print the totals as JSON.")
def sim_fleet_cmd(count, address, location, station, operator, span, speed, backlog,
                  brews_per_day, processes, seed, workdir, as_json):
    """Run many lightweight virtual devices against a broker, each with its own connection
    and credentials, enrolled in the registry as the factory line would leave them.

    Each device speaks through the firmware's own MQTT client and telemetry codec with the
    default profile (readings every 15 min, a message per 8 readings or per counter event).
    New devices need the broker's password file and ACL again afterwards
    (`musket registry export-broker`, then reload the broker).

    \b
    Example:
      musket sim fleet --devices 1000 --broker 127.0.0.1:1883 --for 2m --speed 60
    """
    from musket import simfleet
    from musket.registry.core import Registry, default_actor

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    with Registry.open(location) as registry:
        devices = simfleet.enroll(registry, count, work, default_actor(station, operator),
                                  seed=seed)
    console = Console(stderr=True)
    with console.status("starting") as status:
        def progress(connected: int, acked: int) -> None:
            status.update(f"{connected:,} connected, {acked:,} messages acknowledged")

        result = simfleet.run(devices, [address], run_s=span, speed=speed,
                              processes=processes, brews_per_day=brews_per_day,
                              backlog_s=simfleet.STEADY if backlog is None else backlog,
                              seed=seed, workdir=work, progress=progress)
    totals = {"devices": len(devices), "connected_max": result.connected_max,
              "messages_sent": result.sent, "messages_acked": result.acked,
              "brews": sum(d["brews"] for d in result.devices.values()),
              "session_failures": result.failures, "last_error": result.last_error}
    if as_json:
        click.echo(json.dumps(totals, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key, value in totals.items():
        table.add_row(key.replace("_", " "), "-" if value is None else f"{value:,}"
                      if isinstance(value, int) else str(value))
    Console().print(table)
