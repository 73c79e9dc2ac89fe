"""`musket fleet ...`: thin wrappers over musket.fleet. Registered on the main group in cli.py."""

from __future__ import annotations

import os

import click
from rich.console import Console
from rich.table import Table

from musket.cli_registry import _actor_options, _print_json, _registry, _registry_option
from musket.errors import BadInput
from musket.fleet.sims import ACTIONS


def _view_options(f):
    # --registry and --json, as every view and import takes them.
    f = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)
    return _registry_option(f)


def _open(location):
    return _registry().Registry.open(location)


def _table(title: str, columns: list[str], rows: list[list]) -> None:
    table = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        table.add_column(c, no_wrap=i == 0)  # the key (a device ID, an ICCID) whole
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    Console().print(table)


def _mb(n) -> str:
    return "" if n is None else f"{n / 1_000_000:.3f} MB"


def _short(iso_time) -> str:
    return iso_time.replace("T", " ")[:19] + "Z" if iso_time else ""


@click.group("fleet")
def fleet_group() -> None:
    """The fleet service: every device's state, every SIM's data and cost.

    \b
    Example:
      musket fleet serve --broker mqtt.example.com --user fleet-1 --ca ca.pem
      musket fleet status
    """


@fleet_group.command("serve")
@_registry_option
@click.option("--broker", "brokers", required=True, multiple=True,
              metavar="HOST[:PORT] | amqp://HOST:PORT",
              help="The MQTT broker the devices use (port 8883 with --ca, else 1883); or, for "
                   "a RabbitMQ cluster, each node's AMQP listener as amqp://HOST:PORT (repeat "
                   "it: a lost node's copies move to the next).")
@click.option("--user", required=True,
              help="A service user of the broker's ACL; each copy of the service needs its "
                   "own (the broker binds the client id to the user name).")
@click.option("--password-env", default="MUSKET_MQTT_PASSWORD", show_default=True,
              metavar="VAR", help="The environment variable holding the user's password.")
@click.option("--ca", "ca_file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="The CA of the broker's certificate: TLS.")
@click.option("--client-id", default=None,
              help="The MQTT client id of this copy's persistent session (default: the "
                   "user name).")
@click.option("--group", default=None,
              help="Share the load with the other copies in this MQTT shared-subscription "
                   "group (default: one copy, plain subscriptions; see docs/fleet.md for the "
                   "broker restart caveat).")
@click.option("--status/--no-status", default=True, show_default=True,
              help="This copy takes the devices' status messages: exactly one copy should.")
@click.option("--telemetry/--no-telemetry", default=True, show_default=True,
              help="This copy takes telemetry and replies (MQTT only): a status owner "
                   "without them keeps a fleet's reconnection statuses from queueing in front "
                   "of its share of the telemetry.")
def fleet_serve(location, brokers, user, password_env, ca_file, client_id, group, status,
                telemetry):
    """Take what devices publish (telemetry, status, replies) into the registry's database,
    each message once, until SIGTERM. Several copies share the load (one with --status).

    \b
    Example:
      MUSKET_MQTT_PASSWORD=... musket fleet serve --registry postgresql://fleet@db/musket \\
          --broker mqtt.example.com --user fleet-1 --ca ca.pem
      MUSKET_MQTT_PASSWORD=... musket fleet serve --registry postgresql://fleet@db/musket \\
          --broker amqp://node-1:5672 --broker amqp://node-2:5672 --user fleet-1
    """
    import asyncio

    from musket.fleet.amqp import AmqpLogin
    from musket.fleet.ingest import BrokerLogin
    from musket.fleet.service import serve

    password = os.environ.get(password_env)
    if password is None:
        raise BadInput(f"no password: ${password_env} is not set",
                       hint=f"export {password_env}=... (the service user's)")
    nodes = [_amqp_node(b) for b in brokers if b.startswith("amqp://")]
    if nodes and len(nodes) != len(brokers):
        raise BadInput("--broker: either MQTT brokers or amqp:// nodes, not both")
    if nodes:
        login = AmqpLogin(tuple(nodes), user, password)
        where = ", ".join(f"{h}:{p}" for h, p in nodes)
    else:
        if len(brokers) > 1:
            raise BadInput("--broker: one MQTT broker (several only as amqp:// nodes)")
        host, _, port = brokers[0].partition(":")
        login = BrokerLogin(host, int(port or (8883 if ca_file else 1883)), user, password,
                            client_id or user, ca_file)
        where = f"{host}:{login.port}"
    with _open(location) as registry:
        click.echo(f"fleet: serving {registry.url} from {where} as {user}"
                   f"{' (status owner)' if status and not nodes else ''}", err=True)
        asyncio.run(serve(registry.engine, login, group=group, status=status,
                          telemetry=telemetry, log=lambda line: click.echo(line, err=True)))


def _amqp_node(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("amqp://").rstrip("/").partition(":")
    if not host or (port and not port.isdigit()):
        raise BadInput(f"--broker {url!r}: expected amqp://HOST:PORT")
    return host, int(port or 5672)


@fleet_group.command("status")
@_view_options
def fleet_status(location, as_json):
    """Every device: online, last seen, signal, data this month, counters, open service
    events, firmware (the application's version) and image (the MicroPython firmware image's).

    \b
    Example:
      musket fleet status --json
    """
    from musket.fleet import views

    with _open(location) as registry:
        rows = views.fleet_status(registry.engine)
    if as_json:
        _print_json(rows)
        return
    _table("fleet", ["device", "online", "last seen", "signal", "data (month)", "counters",
                     "service", "firmware", "image", "gaps"],
           [[r["device_id"], {True: "yes", False: "no", None: "never"}[r["online"]],
             _short(r["last_seen"]), r["signal"],
             _mb(r["data_month_bytes"]) + (" paused" if r["data_paused"] else ""),
             " ".join(f"{k}={v:g}" for k, v in r["counters"].items()),
             r["open_service_events"] or "", r["firmware"], r["image"],
             r["gaps"] or ""] for r in rows])


@fleet_group.command("device")
@click.argument("device_id")
@_view_options
def fleet_device(device_id, location, as_json):
    """One device: state, health, SIM and data, counters, connection history.

    \b
    Example:
      musket fleet device dev-a
    """
    from musket.fleet import views

    with _open(location) as registry:
        d = views.device_detail(registry.engine, device_id)
    if d is None:
        raise BadInput(f"device {device_id} is not in the registry")
    if as_json:
        _print_json(d)
        return
    online = {True: "online", False: "offline", None: "never heard from"}[d["online"]]
    click.echo(f"{d['device_id']}  {online}, last seen {_short(d['last_seen'])}, "
               f"firmware {d['firmware'] or '?'}, image {d['image'] or '?'}")
    click.echo(f"SIM {d['iccid']} ({d['sim_state']}, plan {d['plan']}), "
               f"{_mb(d['data']['month_bytes'])} this month"
               + (", data paused by the carrier" if d["data"]["paused"] else ""))
    h = d["health"]
    click.echo(f"boots {h['boot_count']}, last reset {h['reset_cause']}, reboots "
               f"{h['reboot_reasons']}, heap low {h['heap_free']} (block {h['heap_largest']})"
               + (f", last crash {h['crash']}" if h["crash"] else ""))
    click.echo(f"counters {d['counters']}, open service events {d['open_service_events']}, "
               f"messages {d['messages']['stored']} (gaps {d['messages']['gaps']})")
    _table("sessions", ["connected", "disconnected", "why"],
           [[_short(s["connected"]), _short(s["disconnected"]), s["why"]]
            for s in d["sessions"]])
    for r in d["rejected"]:
        click.echo(f"rejected {r['count']}x {r['reason']}: {r['detail']}")
    for o in d["ota"]:
        click.echo(f"update campaign {o['campaign']}: {o['state']}"
                   + (f" ({o['reason']})" if o["reason"] else ""))


@fleet_group.command("usage")
@_view_options
def fleet_usage(location, as_json):
    """Data this month per SIM and plan, its cost, and the month's forecast.

    \b
    Example:
      musket fleet usage
    """
    from musket.fleet import plans

    with _open(location) as registry:
        sims, pools = plans.month_usage(registry.engine)
        raised = plans.alerts(registry.engine)
    if as_json:
        _print_json({"sims": [s.as_dict() for s in sims], "pools": pools, "alerts": [
            {**a, "raised": a["raised"].isoformat()} for a in raised]})
        return
    _table("data this month, per SIM", ["ICCID", "plan", "state", "used", "carrier",
                                        "forecast", "cost", "forecast cost"],
           [[s.iccid, s.plan, s.state, _mb(s.used_bytes), _mb(s.carrier_bytes),
             _mb(s.forecast_bytes), _money(s.cost, s.currency),
             _money(s.forecast_cost, s.currency)] for s in sims])
    if pools:
        _table("pooled plans", ["plan", "SIMs", "used", "included", "forecast", "cost",
                                "forecast cost"],
               [[p["plan"], p["sims"], _mb(p["used_bytes"]), _mb(p["included_bytes"]),
                 _mb(p["forecast_bytes"]), _money(p["cost"], p["currency"]),
                 _money(p["forecast_cost"], p["currency"])] for p in pools])
    for a in raised:
        click.echo(f"alert {a['month']}: {a['subject']} passed {a['threshold']} %")


def _money(value, currency) -> str:
    return "" if value is None else f"{value:.2f} {currency}"


@fleet_group.group("plans")
def plans_group() -> None:
    """Data plans: monthly fee, included data, overage, pooled or per SIM.

    \b
    Example:
      musket fleet plans import plans.toml
    """


@plans_group.command("import")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@_view_options
def plans_import(plan_file, location, as_json):
    """Store the plans of a TOML file (all or none; a plan of the same name is replaced).

    \b
    Example:
      musket fleet plans import plans.toml
    """
    from musket.fleet import plans

    with _open(location) as registry:
        stored = plans.import_plans(registry.engine, plan_file)
    if as_json:
        _print_json([p.__dict__ for p in stored])
        return
    for p in stored:
        click.echo(f"plan {p.name}: {p.monthly_fee:.2f} {p.currency} a month, "
                   f"{_mb(p.included_bytes)} included, {p.overage_per_mb:.2f} {p.currency} "
                   f"per MB beyond, {'pooled' if p.pooled else 'per SIM'}")


@fleet_group.command("carrier-import")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@_view_options
def carrier_import(csv_file, location, as_json):
    """Store the carrier's usage file (iccid,day,bytes). Rows with an unknown ICCID or that
    cannot be read are counted and named by line; nothing of them is stored.

    \b
    Example:
      musket fleet carrier-import usage-2026-12.csv
    """
    from musket.fleet import usage

    with _open(location) as registry:
        result = usage.import_carrier(registry.engine, csv_file)
    if as_json:
        _print_json(result.as_dict())
    else:
        click.echo(f"{csv_file}: {result.rows} rows stored, {result.unknown} unknown ICCIDs, "
                   f"{result.bad} bad rows")
        for problem in result.problems:
            click.echo(f"  {problem}")
    if result.unknown or result.bad:
        raise SystemExit(int(BadInput.exit_code))


@fleet_group.command("reconcile")
@_registry_option
@click.option("--since", default=None, metavar="YYYY-MM-DD",
              help="First day (default: the first of this month).")
@click.option("--until", default=None, metavar="YYYY-MM-DD", help="Last day (default: today).")
@click.option("--tolerance", type=click.FloatRange(0, 10), default=0.05, show_default=True,
              help="Flag a SIM whose device and carrier bytes differ by more than this share.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reconcile(location, since, until, tolerance, as_json):
    """Device-reported bytes against the carrier's, per SIM, over the days the carrier's file
    covers; exits 3 when a SIM is flagged.

    \b
    Example:
      musket fleet reconcile --tolerance 0.05
    """
    from datetime import UTC, date, datetime

    from musket.fleet import usage

    today = datetime.now(UTC).date()
    try:
        first = date.fromisoformat(since) if since else today.replace(day=1)
        last = date.fromisoformat(until) if until else today
    except ValueError as e:
        raise BadInput(f"--since/--until: {e}") from None
    with _open(location) as registry:
        rows = usage.reconcile(registry.engine, first, last)
    flagged = [r for r in rows if r.flagged(tolerance)]
    if as_json:
        _print_json([r.as_dict(tolerance) for r in rows])
    else:
        _table(f"device against carrier, {first} to {last}",
               ["ICCID", "device", "carrier", "days", "difference", ""],
               [[r.iccid, _mb(r.device_bytes), _mb(r.carrier_bytes), r.days,
                 f"{r.difference:+.1%}", "FLAGGED" if r.flagged(tolerance) else ""]
                for r in rows])
    if flagged:
        raise SystemExit(3)


@fleet_group.command("alerts")
@_view_options
def fleet_alerts(location, as_json):
    """Plan alerts raised (70, 90, 100 % of a plan), each once.

    \b
    Example:
      musket fleet alerts
    """
    from musket.fleet import plans

    with _open(location) as registry:
        plans.raise_alerts(registry.engine)
        rows = plans.alerts(registry.engine)
    if as_json:
        _print_json([{**a, "raised": a["raised"].isoformat()} for a in rows])
        return
    _table("plan alerts", ["month", "subject", "threshold", "used", "included", "raised"],
           [[a["month"], a["subject"], f"{a['threshold']} %", _mb(a["used_bytes"]),
             _mb(a["included_bytes"]), str(a["raised"])[:19]] for a in rows])


@fleet_group.command("rejected")
@_view_options
def fleet_rejected(location, as_json):
    """Messages the service would not store, counted per source and reason.

    \b
    Example:
      musket fleet rejected
    """
    from musket.fleet import views

    with _open(location) as registry:
        rows = views.rejected(registry.engine)
    if as_json:
        _print_json(rows)
        return
    _table("rejected messages", ["source", "reason", "count", "last", "detail"],
           [[r["source"], r["reason"], r["count"], _short(r["last"]), r["detail"]]
            for r in rows])


@fleet_group.command("service-close")
@click.argument("device_id")
@click.option("--seq", type=int, default=None,
              help="The service event's sequence number (default: every open one).")
@click.option("--by", "by", required=True, help="Who did the service.")
@_registry_option
def service_close(device_id, seq, by, location):
    """Close a device's open service events (the work is done).

    \b
    Example:
      musket fleet service-close dev-a --seq 41 --by "J. Ortega"
    """
    from musket.fleet import service_events

    with _open(location) as registry:
        closed = service_events.close(registry.engine, device_id, by, seq)
    click.echo(f"{device_id}: closed service event(s) {', '.join(map(str, closed))}")


@fleet_group.group("sims")
def sims_group() -> None:
    """SIM lifecycle in bulk: pause, resume, deactivate (from a file, a plan or a tag), each
    SIM audited.

    \b
    Example:
      musket fleet sims pause --file sims.txt --reason "customer asked"
    """


def _bulk(action):
    @sims_group.command(action, help=(
        f"{action.capitalize()} SIMs in bulk (the registry's SIM state "
        f"{{state}}), with a reason and one audit row each.\n\n\b\nExample:\n  musket fleet "
        f"sims {action} --file sims.txt --reason \"...\"").replace("{state}", ACTIONS[action]))
    @click.option("--file", "list_file", type=click.Path(dir_okay=False), default=None,
                  help="A file of ICCIDs, one a line (or a CSV whose first column they are).")
    @click.option("--iccid", "iccids", multiple=True, help="An ICCID (repeat for several).")
    @click.option("--plan", default=None, help="Every SIM on this plan.")
    @click.option("--tag", "tags", multiple=True,
                  help="The SIMs in the devices carrying this tag (repeat for several; "
                       "`musket registry tag`).")
    @click.option("--reason", required=True, help="Why, for the audit log.")
    @click.option("--carrier-states", type=click.Path(dir_okay=False), default=None,
                  help="The simulated carrier's SIM-state file (what `musket sim run "
                       "--carrier-states` reads), told of each change as a carrier's API "
                       "would be.")
    @_registry_option
    @_actor_options
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    def command(list_file, iccids, plan, tags, reason, carrier_states, location, station,
                operator, as_json):
        from musket.fleet import sims

        chosen = list(iccids)
        if list_file:
            chosen += sims.read_iccids(list_file)
        with _open(location) as registry:
            if plan:
                chosen += [s.iccid for s in registry.sims() if s.plan == plan]
            if tags:
                from musket.registry import tags as device_tags

                tagged = set(device_tags.tagged(registry.engine, list(tags)))
                chosen += [d.iccid for d in registry.devices()
                           if d.device_id in tagged and d.iccid]
            actor = _registry().default_actor(station, operator)
            result = sims.change_states(registry, list(dict.fromkeys(chosen)), action,
                                        reason, actor)
        if carrier_states and result.changed:
            from musket_sim import carrier

            carrier.write_states(carrier_states, dict.fromkeys(result.changed, result.state))
        if as_json:
            _print_json(result.as_dict())
        else:
            click.echo(f"{action}: {len(result.changed)} SIMs now {result.state}, "
                       f"{len(result.refused)} refused")
            for iccid, why in result.refused.items():
                click.echo(f"  {iccid}: {why}")
        if result.refused:
            raise SystemExit(int(_registry().RegistryRefused.exit_code))
    return command


for _action in ACTIONS:
    _bulk(_action)



from musket.cli_web import web_group  # noqa: E402

fleet_group.add_command(web_group)
