"""`musket factory verify` and `musket factory yield`: thin wrappers over musket.eol and the
registry's end-of-line results. Registered on the main group in cli.py."""

from __future__ import annotations

import datetime as dt
import json
import sys

import click
from rich.console import Console
from rich.table import Table

from musket.cli_registry import _actor_options, _registry_option
from musket.errors import BadInput, ExitCode


@click.group("factory")
def factory_group() -> None:
    """The end of the line: verify each provisioned unit, report the yield.

    \b
    Example:
      musket factory verify --port /dev/ttyUSB0 --broker-host mqtt.example.com --ca ca.pem
      musket factory yield
    """


@factory_group.command("verify")
@click.option("--port", required=True, help="The unit's console: /dev/ttyUSB0, /dev/pts/N.")
@_registry_option
@_actor_options
@click.option("--broker-host", envvar="MUSKET_BROKER_HOST", default=None,
              help="Watch the unit's telemetry arrive at this broker (default: "
                   "$MUSKET_BROKER_HOST; without one, the unit's own count of acknowledged "
                   "messages is read).")
@click.option("--broker-port", type=click.IntRange(1, 65535), default=None,
              help="Broker port (default 8883, 1883 with --no-tls).")
@click.option("--tls/--no-tls", default=True, show_default=True)
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The broker's CA certificate (PEM).")
@click.option("--service-user", envvar="MUSKET_SERVICE_USER", default="musket-eol",
              show_default=True, help="The broker's service user the station connects as.")
@click.option("--service-password", envvar="MUSKET_SERVICE_PASSWORD", default=None,
              help="Its password (default: $MUSKET_SERVICE_PASSWORD; never printed).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=None,
              help="Seconds to wait for the telemetry's acknowledgement after the selftest.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_cmd(port, location, station, operator, broker_host, broker_port, tls, ca_file,
               service_user, service_password, timeout, as_json):
    """End-of-line test of one provisioned unit: its selftest, then its first telemetry
    acknowledged by the broker. The result and its measurements go to the registry; the unit
    is shippable only when it passed. Exit code 3 when it failed.

    \b
    Example:
      musket factory verify --port /dev/ttyUSB0 --station eol-1 --operator ana \\
          --broker-host mqtt.example.com --ca ca.pem
    """
    from musket import eol
    from musket.registry import Registry, default_actor

    watch = None
    if broker_host:
        if not service_password:
            raise BadInput("watching the broker needs the service user's password: set "
                           "$MUSKET_SERVICE_PASSWORD or give --service-password")
        if tls and not ca_file:
            raise BadInput("TLS needs the broker's CA certificate: give --ca FILE, or --no-tls")
        watch = eol.BrokerWatch(broker_host, broker_port or (8883 if tls else 1883),
                                service_user, service_password, ca_file if tls else None)
    with Registry.open(location) as registry:
        result = eol.verify(port, registry, default_actor(station, operator), watch,
                            timeout or eol.TELEMETRY_TIMEOUT_S)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        verdict = "PASSED, shippable" if result.passed else (
            "FAILED, not shippable: " + ", ".join(result.codes))
        click.echo(f"{result.device_id}: {verdict} ({result.seconds:.1f} s)")
        if result.codes:
            from musket.console import view

            Console(highlight=False).print(view.diagnoses_table(result.codes))
    if not result.passed:
        sys.exit(ExitCode.DEVICE_ERRORS)


def _day(ctx, param, value):
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a date, 2026-12-03") from None


@factory_group.command("yield")
@_registry_option
@click.option("--since", callback=_day, default=None, help="From this UTC day (2026-12-01).")
@click.option("--station", default=None, help="Only this station.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def yield_cmd(location, since, station, as_json):
    """The end-of-line yield per station and day: units passed and failed, and the failure
    codes.

    \b
    Example:
      musket factory yield --since 2026-12-01
    """
    from musket.registry import Registry
    from musket.registry.eol import yield_report

    with Registry.open(location) as registry:
        rows = yield_report(registry, since, station)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    table = Table(title="end-of-line yield")
    for column in ("day", "station", "passed", "failed", "yield", "failure codes"):
        table.add_column(column, justify="right" if column in ("passed", "failed", "yield")
                         else "left")
    for r in rows:
        d = r.as_dict()
        table.add_row(d["day"], d["station"], str(d["passed"]), str(d["failed"]),
                      f"{d['yield']:.0%}" if d["yield"] is not None else "-",
                      ", ".join(f"{c} ×{n}" for c, n in d["codes"].items()))
    Console().print(table)
