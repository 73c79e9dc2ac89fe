"""`musket provision` and `musket registry ...`: thin wrappers over musket.provision and
musket.registry. Registered on the main group in cli.py."""

from __future__ import annotations

import json
import os

import click
from rich.console import Console
from rich.table import Table

from musket import broker
from musket.errors import BadInput
from musket.identity import SIM_STATES


def _registry():
    # SQLAlchemy and Alembic load only when a command opens the registry, so that every
    # other musket command (each station runs many) starts without them.
    import musket.registry

    return musket.registry


def iso(value):
    from musket.registry.records import iso as registry_iso

    return registry_iso(value)

_REGISTRY_HELP = ("Registry: a SQLite file or a PostgreSQL URL (postgresql://user@host/db). "
                  "Default: $MUSKET_REGISTRY, else ./musket-registry.sqlite.")


def _registry_option(f):
    return click.option("--registry", "location", default=None, metavar="FILE|URL",
                        help=_REGISTRY_HELP)(f)


def _actor_options(f):
    f = click.option("--operator", envvar="MUSKET_OPERATOR", default=None,
                     help="Who is at the station, for the audit log (default: $MUSKET_OPERATOR, "
                          "else the login name).")(f)
    return click.option("--station", envvar="MUSKET_STATION", default=None,
                        help="Station name for the audit log (default: $MUSKET_STATION, else "
                             "this machine's name).")(f)


def _when(value) -> str:
    """A UTC time for tables: 2026-01-05 09:14:03Z."""
    return iso(value).replace("T", " ").replace("+00:00", "Z") if value else ""


def _print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.command("provision")
@click.option("--port", required=True, help="The unit's console: /dev/ttyUSB0, /dev/pts/N.")
@_registry_option
@_actor_options
@click.option("--broker-host", envvar="MUSKET_BROKER_HOST", required=True,
              help="MQTT broker host the unit connects to (default: $MUSKET_BROKER_HOST).")
@click.option("--broker-port", type=click.IntRange(1, 65535), default=None,
              help="MQTT broker port (default 8883, 1883 with --no-tls).")
@click.option("--tls/--no-tls", default=True, show_default=True,
              help="The unit connects with TLS, which needs --ca. --no-tls opts out: plain "
                   "MQTT, where its credentials cross the network in clear.")
@click.option("--ca", "ca_file", type=click.File("rb"), default=None,
              help="The broker's CA certificate (PEM), written to the unit as /ca.pem.")
@click.option("--rebind", is_flag=True,
              help="The unit holds a new SIM (a SIM swap): bind it in place of the old one.")
@click.option("--reason", default=None, help="Why, for the audit log (required with --rebind).")
@click.option("--old-sim", type=click.Choice(["retired", "inventory"]), default="retired",
              show_default=True, help="With --rebind: where the swapped-out SIM goes.")
@click.option("--allow-unknown-sim", is_flag=True,
              help="Bind a SIM that is not in the registry (it is added and audited).")
@click.option("--id-prefix", default="msk", show_default=True,
              help="Prefix of newly assigned device IDs.")
@click.option("--reset/--no-reset", default=True, show_default=True,
              help="Restart the unit afterwards so it runs with its new config.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def provision_cmd(port, location, station, operator, broker_host, broker_port, tls, ca_file,
                  rebind, reason, old_sim, allow_unknown_sim, id_prefix, reset, as_json):
    """Provision one flashed unit over its console: read ICCID, IMEI and IMSI from its modem,
    bind them to a device ID in the registry, write its MQTT config and credentials, and print
    its label line. Running it again on the same unit changes nothing. The unit connects
    with TLS and gets the broker's CA (--ca) unless --no-tls opts out.

    \b
    Examples:
      musket provision --port /dev/ttyUSB0 --station line-1 --operator ana \\
          --broker-host mqtt.example.com --ca ca.pem
      musket provision --port /dev/ttyUSB0 --broker-host mqtt.example.com --ca ca.pem \\
          --rebind --reason "SIM damaged in transit"
    """
    from musket.provision import BrokerSettings, ProvisionOptions, provision

    options = ProvisionOptions(rebind=rebind, reason=reason, old_sim_state=old_sim,
                               allow_unknown_sim=allow_unknown_sim, id_prefix=id_prefix,
                               reset=reset)
    ca = ca_file.read() if ca_file else None
    settings = BrokerSettings(broker_host, broker_port, tls=tls, ca_pem=ca)
    with _registry().Registry.open(location) as registry:
        actor = _registry().default_actor(station, operator)
        result = provision(port, registry, settings, actor, options)
    if as_json:
        _print_json(result.as_dict())
        return
    click.echo(result.summary)
    click.echo(f"label: {result.label}")


@click.group("registry")
def registry_group() -> None:
    """The device registry: SIM inventory, ICCID/IMEI/device ID bindings, broker credentials
    (hashed) and the audit log, in a SQLite file or PostgreSQL.

    \b
    Example:
      musket registry import-sims sims.csv --station line-1 --operator ana
      musket registry list --registry postgresql://musket@db/musket
    """


@registry_group.command("migrate")
@_registry_option
def migrate_cmd(location):
    """Create the registry, or bring its schema to this musket's version. The only command
    that changes a schema: every other one refuses a registry whose schema is not this
    musket's and names this command.

    \b
    Example:
      musket registry migrate --registry postgresql://musket@db.factory.lan/musket
    """
    from musket.registry import database

    engine = database.connect(location, create=True)
    try:
        before, after = database.migrate(engine)
    finally:
        engine.dispose()
    url = database.describe(str(engine.url))
    if before == after:
        click.echo(f"{url}: schema at revision {after}, nothing to do")
    else:
        click.echo(f"{url}: schema {before or 'empty'} → {after}")


@registry_group.command("import-sims")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False))
@_registry_option
@_actor_options
def import_sims_cmd(csv_file, location, station, operator):
    """Import the connectivity vendor's SIM list (CSV columns ICCID, plan, state). Every row
    is checked first (ICCID digits, length and check digit, plan, state, duplicates in the
    file and in the registry); one bad row and nothing is imported.

    \b
    Example:
      musket registry import-sims sims-2026-01.csv --station stores --operator ana
    """
    with _registry().Registry.open(location) as registry:
        imported = registry.import_sims(csv_file,
                                        _registry().default_actor(station, operator))
    detail = ", ".join(f"{n} {state}" for state, n in sorted(imported.states.items()))
    click.echo(f"imported {imported.count} SIMs ({detail})")


@registry_group.command("list")
@_registry_option
@click.option("--sims", "show_sims", is_flag=True, help="List SIMs instead of devices.")
@click.option("--state", type=click.Choice(SIM_STATES), default=None,
              help="With --sims: only SIMs in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_cmd(location, show_sims, state, as_json):
    """List the registered devices (or, with --sims, the SIMs).

    \b
    Examples:
      musket registry list
      musket registry list --sims --state inventory --json
    """
    with _registry().Registry.open(location) as registry:
        if show_sims or state:
            sims = registry.sims(state)
            if as_json:
                _print_json([s.as_dict() for s in sims])
                return
            table = Table(title=f"SIMs ({len(sims)})")
            for column in ("ICCID", "state", "plan", "device", "updated"):
                table.add_column(column)
            for s in sims:
                table.add_row(s.iccid, s.state, s.plan or "", s.device_id or "",
                              _when(s.updated))
            Console().print(table)
            return
        devices = registry.devices()
    if as_json:
        _print_json([d.as_dict() for d in devices])
        return
    table = Table(title=f"devices ({len(devices)})")
    for column in ("device ID", "IMEI", "ICCID", "SIM", "board", "created"):
        table.add_column(column)
    for d in devices:
        table.add_row(d.device_id, d.imei, d.iccid or "", d.sim_state or "", d.board or "",
                      _when(d.created)[:10])
    Console().print(table)


@registry_group.command("show")
@click.argument("key")
@_registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def show_cmd(key, location, as_json):
    """Show one device (by device ID, IMEI or ICCID) with its binding history, or one SIM.

    \b
    Example:
      musket registry show msk-7k3qx9ta
    """
    from musket.registry import RegistryRefused

    with _registry().Registry.open(location) as registry:
        device = registry.device(key)
        sim = None if device else registry.sim(key.strip())
    if device is None and sim is None:
        raise RegistryRefused(f"no device or SIM {key!r} in the registry")
    if as_json:
        _print_json(device.as_dict() if device else sim.as_dict())
        return
    console = Console(highlight=False)
    if device is None:
        for name, value in sim.as_dict().items():
            console.print(f"{name:>10}  {value if value is not None else ''}", markup=False)
        return
    rows = {"device ID": device.device_id, "IMEI": device.imei, "ICCID": device.iccid,
            "IMSI": device.imsi, "SIM state": device.sim_state, "board": device.board,
            "chip ID": device.chip_id, "created": iso(device.created),
            "credentials": (f"issued {iso(device.credentials_issued)}"
                            if device.credentials_issued else "none")}
    for name, value in rows.items():
        console.print(f"{name:>11}  {value or ''}", markup=False)
    table = Table(title="bindings")
    for column in ("ICCID", "IMEI", "bound", "unbound", "reason"):
        table.add_column(column)
    for b in device.bindings:
        table.add_row(b.iccid, b.imei, iso(b.bound), iso(b.unbound) or "", b.reason or "")
    console.print(table)


@registry_group.command("export-bindings")
@_registry_option
@click.option("--output", "-o", type=click.File("w", atomic=True), default="-",
              help="Write to this file (default: standard output).")
def export_bindings_cmd(location, output):
    """Export the current ICCID, IMEI, device ID bindings as CSV (for the connectivity vendor
    or the fleet service).

    \b
    Example:
      musket registry export-bindings -o bindings.csv
    """
    with _registry().Registry.open(location) as registry:
        registry.write_bindings_csv(output)


# export-broker's options that shape the --conf file: parameter name -> option.
_CONF_OPTIONS = {"tls": "--tls/--no-tls", "listen_port": "--port",
                 "certfile": "--certfile", "keyfile": "--keyfile", "address": "--address"}


@registry_group.command("export-broker")
@_registry_option
@click.option("--passwd", "passwd_path", required=True, type=click.Path(dir_okay=False),
              help="Mosquitto password_file to write (the stored PBKDF2 hashes).")
@click.option("--acl", "acl_path", required=True, type=click.Path(dir_okay=False),
              help="Mosquitto acl_file to write (each device confined to its prefix).")
@click.option("--conf", "conf_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the broker's whole configuration (mosquitto -c FILE) naming "
                   "these two files: a TLS listener, no anonymous clients, client ids bound "
                   "to user names, packets capped at what the devices send and take.")
@click.option("--tls/--no-tls", default=True, show_default=True,
              help="With --conf: the listener speaks TLS. --no-tls is plain MQTT, for units "
                   "provisioned with --no-tls: credentials cross the network in clear.")
@click.option("--port", "listen_port", type=click.IntRange(1, 65535), default=None,
              help="With --conf: the listener's port (default 8883, 1883 with --no-tls).")
@click.option("--certfile", default=broker.DEFAULT_CERTFILE, show_default=True,
              help="With --conf: the broker's certificate (PEM, signed by that CA).")
@click.option("--keyfile", default=broker.DEFAULT_KEYFILE, show_default=True,
              help="With --conf: the broker's private key (PEM).")
@click.option("--address", default=None,
              help="With --conf: listen on this address only (default: every interface).")
@click.pass_context
def export_broker_cmd(ctx, location, passwd_path, acl_path, conf_path, tls, listen_port,
                      certfile, keyfile, address):
    """Write the broker's password file and ACL for every provisioned device and, with
    --conf, the Mosquitto configuration that uses them. The registry holds only the hashes
    the broker needs, never the secrets. Paths in the configuration are made absolute.

    \b
    Examples:
      musket registry export-broker --passwd /etc/mosquitto/passwd --acl /etc/mosquitto/acl
      musket registry export-broker --passwd /etc/mosquitto/passwd --acl /etc/mosquitto/acl \\
          --conf /etc/mosquitto/musket.conf --certfile /etc/mosquitto/certs/mqtt.example.com.crt
    """
    conf = None
    if conf_path is not None:
        # Checked before the registry opens: a bad option writes no file.
        conf = broker.MosquittoConf(
            password_file=os.path.abspath(passwd_path), acl_file=os.path.abspath(acl_path),
            tls=tls, certfile=os.path.abspath(certfile),
            keyfile=os.path.abspath(keyfile), port=listen_port, address=address)
    else:
        given = [option for name, option in _CONF_OPTIONS.items()
                 if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
        if given:
            raise BadInput(f"{', '.join(given)} without --conf: the broker's configuration "
                           "is written only with --conf FILE")
    with _registry().Registry.open(location) as registry:
        count = registry.export_broker(passwd_path, acl_path)
    written = [passwd_path, acl_path]
    if conf is not None:
        broker.write_text_atomically(conf_path, conf.render())
        written.append(conf_path)
    click.echo(f"{count} device{'' if count == 1 else 's'}: {', '.join(written)}")


@registry_group.command("audit")
@_registry_option
@click.option("--subject", default=None, help="Only records about this device ID or ICCID.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the newest N records.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def audit_cmd(location, subject, limit, as_json):
    """Show the audit log (append-only): who did what, where and when, and what changed.

    \b
    Example:
      musket registry audit --subject msk-7k3qx9ta
    """
    with _registry().Registry.open(location) as registry:
        entries = registry.audit(subject, limit)
    if as_json:
        _print_json([e.as_dict() for e in entries])
        return
    console = Console(highlight=False, soft_wrap=True)
    for e in entries:
        console.print(f"#{e.id} {_when(e.at)} {e.station}/{e.operator} {e.action} {e.subject}: "
                      f"{e.summary or 'nothing changed'}", markup=False)
    if not entries:
        console.print("no audit records" + (f" about {subject}" if subject else ""))


@registry_group.command("sim-state")
@click.argument("iccid")
@click.argument("state", type=click.Choice(SIM_STATES))
@click.option("--reason", required=True, help="Why, for the audit log.")
@_registry_option
@_actor_options
def sim_state_cmd(iccid, state, reason, location, station, operator):
    """Change a SIM's state: activate a bound SIM, suspend, resume, return to inventory or
    retire (provisioning binds; a SIM swap is `musket provision --rebind`).

    \b
    Example:
      musket registry sim-state 8949019237115905561 suspended --reason "unpaid invoice 4711"
    """
    with _registry().Registry.open(location) as registry:
        before = registry.sim(iccid.strip())
        actor = _registry().default_actor(station, operator)
        sim = registry.set_sim_state(iccid, state, reason, actor)
    click.echo(f"SIM {sim.iccid}: {before.state if before else '?'} → {sim.state}")


@registry_group.group("tag")
def tag_group() -> None:
    """Device tags: free labels that pick a cohort (`musket ota publish --tag`, `musket fleet
    sims pause --tag`); each change audited.

    \b
    Example:
      musket registry tag add pilot msk-7k3qx9ta msk-2m8wq4hd
      musket registry tag list
    """


_TAG_HELP = {
    "add": "Add a tag to devices (all or none: an unknown device changes nothing).\n\n\b\n"
           "Example:\n  musket registry tag add pilot msk-7k3qx9ta msk-2m8wq4hd\n"
           "  musket registry tag add cafe-berlin --file units.txt",
    "remove": "Remove a tag from the devices that carry it.\n\n\b\nExample:\n"
              "  musket registry tag remove pilot msk-7k3qx9ta",
}


def _tag_change(verb):
    @tag_group.command(verb, help=_TAG_HELP[verb])
    @click.argument("tag")
    @click.argument("device_ids", nargs=-1)
    @click.option("--file", "list_file", type=click.File("r", encoding="utf-8-sig"),
                  default=None, help="A file of device IDs, one a line.")
    @_registry_option
    @_actor_options
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    def command(tag, device_ids, list_file, location, station, operator, as_json):
        from musket.registry import tags

        chosen = list(device_ids)
        if list_file is not None:
            chosen += [line.split("#", 1)[0].strip() for line in list_file]
        chosen = [d for d in chosen if d]
        if not chosen:
            raise tags.TagError("no devices given (arguments or --file)")
        with _registry().Registry.open(location) as registry:
            actor = _registry().default_actor(station, operator)
            change = tags.add if verb == "add" else tags.remove
            changed = change(registry.engine, tag, chosen, actor)
        if as_json:
            _print_json({"tag": tags.check_tag(tag), verb + ("ed" if verb == "add" else "d"):
                         changed})
        else:
            click.echo(f"{tags.check_tag(tag)}: {len(changed)} device(s) "
                       f"{'tagged' if verb == 'add' else 'untagged'}, "
                       f"{len(chosen) - len(changed)} unchanged")

    return command


for _verb in ("add", "remove"):
    _tag_change(_verb)


@tag_group.command("list")
@_registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the tags as JSON.")
def tag_list(location, as_json):
    """Every tag with its devices.

    \b
    Example:
      musket registry tag list --json
    """
    from musket.registry import tags

    with _registry().Registry.open(location) as registry:
        listing = tags.listing(registry.engine)
    if as_json:
        _print_json(listing)
        return
    for tag, device_ids in listing.items():
        click.echo(f"{tag} ({len(device_ids)}): {' '.join(device_ids)}")
    if not listing:
        click.echo("no tags")
