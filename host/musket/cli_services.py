"""`musket services ...`: thin wrappers over musket.services. Registered on the main group in
cli.py."""

from __future__ import annotations

import os
import time

import click

from musket.cli_fleet import _open, _short, _table, _view_options
from musket.cli_registry import _actor_options, _print_json, _registry_option
from musket.errors import BadInput


def _actor(station, operator):
    from musket.registry.core import default_actor

    return default_actor(station, operator)


@click.group("services")
def services_group() -> None:
    """Services on what the fleet committed: rules that act once, orders of consumables,
    technician tickets, pay-per-use billing.

    \b
    Example:
      musket services check rules/
      musket services run --rules rules/ --once
      musket services bill 2026-12 --csv
    """


@services_group.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def services_check(paths, as_json):
    """Check rules files (a file per product, or a directory of *.yaml): every problem is
    named by file, line and field; nothing runs.

    \b
    Example:
      musket services check rules/
    """
    from musket.services import rules

    products = rules.load_all(paths)
    rows = [{"product": p.name, "file": p.source, "rules": len(p.rules),
             "conditions": sorted({r.condition for r in p.rules}),
             "consumables": sorted(p.consumables), "tariff": bool(p.tariff)}
            for p in products.values()]
    if as_json:
        _print_json(rows)
        return
    _table("rules", ["product", "file", "rules", "conditions", "consumables", "tariff"],
           [[r["product"], r["file"], r["rules"], " ".join(r["conditions"]),
             " ".join(r["consumables"]), "yes" if r["tariff"] else "no"] for r in rows])


@services_group.command("run")
@_registry_option
@click.option("--rules", "rule_paths", required=True, multiple=True,
              type=click.Path(exists=True), help="A rules file or a directory of them "
                                                 "(repeat for more).")
@click.option("--once", is_flag=True, help="One pass of the engine and the dispatcher, then "
                                           "exit (for scripts and cron).")
@click.option("--interval", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="Seconds between passes.")
@click.option("--sinks", "sink_dir", default=".", type=click.Path(file_okay=False),
              show_default=True, help="The directory sink actions' paths are relative to.")
@click.option("--broker", default=None, metavar="HOST[:PORT]",
              help="The MQTT broker to send device commands through (without it, command "
                   "actions wait in the outbox).")
@click.option("--user", default=None, help="The broker's service user for commands.")
@click.option("--password-env", default="MUSKET_MQTT_PASSWORD", show_default=True,
              metavar="VAR", help="The environment variable holding the user's password.")
@click.option("--ca", "ca_file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="The CA of the broker's certificate: TLS.")
@click.option("--json", "as_json", is_flag=True, help="Print each pass's figures as JSON.")
def services_run(location, rule_paths, once, interval, sink_dir, broker, user, password_env,
                 ca_file, as_json):
    """Run the rules engine and the dispatcher: each pass reads what the fleet committed
    since the last, acts once per trigger and delivers the outbox. Several copies may run
    against one database.

    \b
    Example:
      musket services run --registry postgresql://svc@db/musket --rules rules/ \\
          --broker mqtt.example.com --user services-1 --ca ca.pem
    """
    import json

    from sqlalchemy.exc import OperationalError

    from musket.errors import Unreachable
    from musket.services import rules
    from musket.services.dispatch import CommandPublisher, Dispatcher
    from musket.services.engine import RulesEngine

    products = rules.load_all(rule_paths)
    publish = None
    if broker:
        password = os.environ.get(password_env)
        if password is None or not user:
            raise BadInput(f"--broker needs --user and the password in ${password_env}")
        host, _, port = broker.partition(":")
        publish = CommandPublisher(host, int(port or (8883 if ca_file else 1883)), user,
                                   password, ca_file)
    with _open(location) as registry:
        engine = RulesEngine(registry.engine, products)
        engine.sync_tariffs()
        dispatcher = Dispatcher(registry.engine, sink_dir, publish)
        while True:
            try:
                figures = {**engine.run_once().as_dict(), **dispatcher.run_once().as_dict()}
            except OperationalError as e:
                # The database went away or ended this pass (a deadlock with another copy):
                # what committed stands, the cursors did not move, the next pass redoes it.
                if once:
                    raise Unreachable(f"registry: {str(e.orig or e).splitlines()[0]}") from None
                click.echo(f"services: pass failed, retrying: {str(e.orig or e).splitlines()[0]}",
                           err=True)
                time.sleep(interval)
                continue
            if as_json:
                click.echo(json.dumps(figures, sort_keys=True))
            elif once or any(figures.values()):
                click.echo("services: " + ", ".join(f"{k} {v}" for k, v in figures.items()),
                           err=not once)
            if once:
                break
            time.sleep(interval)
    if publish is not None:
        publish.close()


@services_group.group("sites", invoke_without_command=True)
@click.pass_context
@_view_options
@click.option("--customer", default=None, help="Only this customer's devices.")
def services_sites(ctx, location, as_json, customer):
    """Each device's customer, product and location (`sites import FILE` sets them).

    \b
    Example:
      musket services sites --customer acme
    """
    if ctx.invoked_subcommand:
        return
    from musket.services import views

    with _open(location) as registry:
        rows = views.sites(registry.engine, customer)
    if as_json:
        _print_json(rows)
        return
    _table("sites", ["device", "customer", "product", "location"],
           [[r["device_id"], r["customer_id"], r["product"], r["location"]] for r in rows])


@services_sites.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@_registry_option
@_actor_options
def services_sites_import(path, location, station, operator):
    """Import customers and sites from a CSV file (device_id, customer_id, customer_name,
    product, location): every bad row is named by its line, and then nothing is imported.

    \b
    Example:
      musket services sites import sites.csv
    """
    from musket.services import sites

    with _open(location) as registry:
        done = sites.import_sites(registry.engine, path, _actor(station, operator))
    click.echo(f"imported {done['sites']} sites of {done['customers']} customers")


@services_group.command("customers")
@_view_options
def services_customers(location, as_json):
    """Every customer and its number of devices.

    \b
    Example:
      musket services customers --json
    """
    from musket.services import views

    with _open(location) as registry:
        rows = views.customers(registry.engine)
    if as_json:
        _print_json(rows)
        return
    _table("customers", ["customer", "name", "devices"],
           [[r["customer_id"], r["name"], r["devices"]] for r in rows])


@services_group.group("orders", invoke_without_command=True)
@click.pass_context
@_view_options
@click.option("--state", type=click.Choice(["placed", "shipped", "installed"]), default=None)
@click.option("--customer", default=None)
def services_orders(ctx, location, as_json, state, customer):
    """Orders of consumables (`orders set ID STATE` moves one on).

    \b
    Example:
      musket services orders --state placed
    """
    if ctx.invoked_subcommand:
        return
    from musket.services import views

    with _open(location) as registry:
        rows = views.orders(registry.engine, customer, state)
    if as_json:
        _print_json(rows)
        return
    _table("orders", ["order", "device", "customer", "consumable", "qty", "state", "placed",
                      "run-out predicted"],
           [[r["order_id"], r["device_id"], r["customer_id"], r["consumable"],
             f"{r['quantity']:g}", r["state"], _short(r["placed"]),
             _short(r["runout_predicted"])] for r in rows])


@services_orders.command("set")
@click.argument("order_id", type=int)
@click.argument("state", type=click.Choice(["shipped", "installed"]))
@_registry_option
@_actor_options
def services_orders_set(order_id, state, location, station, operator):
    """Move an order on: shipped, or installed (which resets the device's level), audited.

    \b
    Example:
      musket services orders set 16 installed --operator ana
    """
    from musket.services.orders import set_order_state

    with _open(location) as registry:
        set_order_state(registry.engine, order_id, state, _actor(station, operator))
    click.echo(f"order {order_id}: {state}")


@services_group.group("tickets", invoke_without_command=True)
@click.pass_context
@_view_options
@click.option("--state", type=click.Choice(["open", "closed"]), default=None)
@click.option("--customer", default=None)
def services_tickets(ctx, location, as_json, state, customer):
    """Technician tickets: the problem, the diagnosis codes, the repair and the parts
    (`tickets close ID` closes one on site).

    \b
    Example:
      musket services tickets --state open
    """
    if ctx.invoked_subcommand:
        return
    from musket.services import views

    with _open(location) as registry:
        rows = views.tickets(registry.engine, state, customer)
    if as_json:
        _print_json(rows)
        return
    _table("tickets", ["ticket", "device", "location", "problem", "codes", "parts", "opened",
                       "closed"],
           [[r["ticket_id"], r["device_id"], r["location"], r["problem"],
             " ".join(r["codes"]), "; ".join(r["parts"]), _short(r["opened"]),
             _short(r["closed"])] for r in rows])


@services_tickets.command("close")
@click.argument("ticket_id", type=int)
@click.option("--repair", required=True, help="What was done on site, for the record.")
@_registry_option
@_actor_options
def services_tickets_close(ticket_id, repair, location, station, operator):
    """Close a ticket on site with the repair made, audited (a ticket also closes itself
    once its device reports healthy again).

    \b
    Example:
      musket services tickets close 7 --repair "sensor connector reseated" --operator rui
    """
    from musket.services.tickets import close_on_site

    with _open(location) as registry:
        close_on_site(registry.engine, ticket_id, _actor(station, operator), repair)
    click.echo(f"ticket {ticket_id}: closed")


@services_group.command("tariffs")
@_view_options
def services_tariffs(location, as_json):
    """The prices billing uses: per product, and customers' own (written by `services run`
    from the rules files).

    \b
    Example:
      musket services tariffs --json
    """
    from musket.services import views

    with _open(location) as registry:
        rows = views.tariffs(registry.engine)
    if as_json:
        _print_json(rows)
        return
    _table("tariffs", ["scope", "currency", "minimum", "prices"],
           [[r["scope"], r["currency"], f"{r['minimum']:.2f}",
             " ".join(f"{k}={v:g}" for k, v in sorted(r["prices"].items()))] for r in rows])


@services_group.command("bill")
@click.argument("period", metavar="YYYY-MM")
@_registry_option
@click.option("--customer", default=None, help="Only this customer's statement.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the statements as CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print the statements as JSON.")
def services_bill(period, location, customer, as_csv, as_json):
    """Billing statements for a month, from the committed counter events in it: the same
    rows give the same bytes, however often they are made.

    \b
    Example:
      musket services bill 2026-12 --csv > statements-2026-12.csv
    """
    from musket.services import billing

    if as_csv and as_json:
        raise BadInput("--csv or --json, not both")
    with _open(location) as registry:
        rows = billing.statements(registry.engine, period, customer)
    if as_json:
        click.echo(billing.to_json(rows), nl=False)
    elif as_csv:
        click.echo(billing.to_csv(rows), nl=False)
    else:
        _table(f"statements {period}", ["customer", "counter", "quantity", "unit price",
                                        "amount", "minimum", "total"],
               [[s["customer_id"], line["counter"], f"{line['quantity']:g}",
                 f"{line['unit_price']:g}", f"{line['amount']:.2f} {s['currency']}",
                 f"{s['minimum']:.2f}", f"{s['total']:.2f}"]
                for s in rows for line in (s["lines"] or [{"counter": "", "quantity": 0,
                                                           "unit_price": 0, "amount": 0}])])


@services_group.command("outbox")
@_view_options
@click.option("--state", type=click.Choice(["pending", "done", "given_up"]), default=None)
def services_outbox(location, as_json, state):
    """The actions the dispatcher delivers: done, waiting for a retry, or given up (why).

    \b
    Example:
      musket services outbox --state given_up
    """
    from musket.services.dispatch import outbox

    with _open(location) as registry:
        rows = outbox(registry.engine, state)
    if as_json:
        _print_json(rows)
        return
    _table("outbox", ["id", "kind", "key", "state", "tries", "next", "reason"],
           [[r["id"], r["kind"], r["key"], r["state"], f"{r['attempts']}/{r['max_attempts']}",
             _short(r["next_at"]) if r["state"] == "pending" else "", r["reason"]]
            for r in rows])
