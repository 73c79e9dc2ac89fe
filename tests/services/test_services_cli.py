"""`musket services ...` through click's runner on a SQLite registry: a site list with bad
rows is refused by line and imports nothing; check names a bad file's line; run --once acts,
the views print tables and JSON; an order moves on; bill regenerates the same bytes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from svchelp import T0, Device, take, write_sites

from musket.cli import main
from musket.errors import ExitCode

RULES = """\
product: coffee
consumables:
  beans: {counter: brews, per_use: 0.01, capacity: 1.0, lead_time_days: 2}
tariff: {currency: EUR, minimum: 1, prices: {brews: 0.05}}
rules:
  - name: descale
    when: {counter: brews, every: 20}
    do: [{sink: {path: descale.jsonl}}]
  - name: beans-low
    when: {consumable: beans}
    do: [{order: }]
"""


@pytest.fixture
def location(tmp_path):
    return str(tmp_path / "registry.sqlite")


def cli(registry_path, *args, ok=True):
    result = CliRunner().invoke(main, [*args, "--registry", registry_path])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_a_site_list_with_bad_rows_imports_nothing_and_names_each_line(registry, tmp_path,
                                                                         location):
    path = write_sites(tmp_path, [("dev-a", "acme", "coffee", "HQ"),
                                  ("dev-b", "acme", "Coffee!", "lobby"),
                                  ("dev-c", "", "coffee", "x"),
                                  ("dev-a", "acme", "coffee", "again"),
                                  ("dev-zz", "acme", "coffee", "nowhere")])
    result = cli(location, "services", "sites", "import", path, ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    for part in ("line 3: product 'Coffee!'", "line 4: customer_id ''",
                 "line 5: device dev-a is listed on line 2"):
        assert part in result.output
    assert json.loads(cli(location, "services", "sites", "--json").output) == []
    path = write_sites(tmp_path, [("dev-a", "acme", "coffee", "HQ"),
                                  ("dev-zz", "acme", "coffee", "nowhere")])
    result = cli(location, "services", "sites", "import", path, ok=False)
    assert "line 3: device dev-zz is not in the registry" in result.output
    assert json.loads(cli(location, "services", "customers", "--json").output) == []


def test_run_once_then_the_views_orders_and_bill(registry, tmp_path, location):
    rules_file = tmp_path / "coffee.yaml"
    rules_file.write_text(RULES)
    assert "coffee" in CliRunner().invoke(main, ["services", "check", str(rules_file)]).output
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.replace("every: 20", "every: twenty"))
    result = CliRunner().invoke(main, ["services", "check", str(bad)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "bad.yaml:7: rules[0].when.every: must be a number above 0" in result.output
    cli(location, "services", "sites", "import",
        write_sites(tmp_path, [("dev-a", "acme", "coffee", "HQ")]))
    take(registry.engine, Device("dev-a").use("brews", 85, T0))
    result = cli(location, "services", "run", "--rules", str(rules_file), "--once", "--json",
                 "--sinks", str(tmp_path))
    figures = json.loads(result.output)
    assert figures["triggers"] == 5 and figures["orders"] == 1 and figures["delivered"] == 4
    (order,) = json.loads(cli(location, "services", "orders", "--json").output)
    assert order["state"] == "placed"
    cli(location, "services", "orders", "set", str(order["order_id"]), "shipped")
    assert "shipped" in cli(location, "services", "orders").output
    bill = cli(location, "services", "bill", "2026-12", "--csv").output
    assert bill.splitlines()[1] == "acme,2026-12,EUR,brews,85.0,0.05,4.25,1.0,4.25"
    assert cli(location, "services", "bill", "2026-12", "--csv").output == bill
    assert json.loads(cli(location, "services", "bill", "2026-12", "--json").output)[0][
        "total"] == 4.25
    assert "done" in cli(location, "services", "outbox").output
    assert json.loads(cli(location, "services", "tickets", "--json").output) == []
    assert json.loads(cli(location, "services", "tariffs", "--json").output) == [
        {"scope": "product:coffee", "currency": "EUR", "minimum": 1.0,
         "prices": {"brews": 0.05}}]


def test_a_technician_closes_a_ticket_on_site_once_with_the_repair_audited(registry, location):
    from datetime import UTC, datetime

    from musket.services.tickets import open_ticket

    with registry.engine.begin() as conn:
        ticket_id = open_ticket(conn, "dev-a", "acme", "Acme HQ", "coffee/sensor",
                                "a sensor has failed", datetime(2026, 12, 3, tzinfo=UTC))
    missing = cli(location, "services", "tickets", "close", str(ticket_id), "--repair", " ",
                  ok=False)
    assert missing.exit_code == ExitCode.BAD_INPUT and "needs the repair" in missing.output
    assert "closed" in cli(location, "services", "tickets", "close", str(ticket_id),
                           "--repair", "sensor connector reseated", "--operator", "rui").output
    (closed,) = json.loads(cli(location, "services", "tickets", "--state", "closed",
                               "--json").output)
    assert closed["ticket_id"] == ticket_id and closed["closed"] is not None
    (entry,) = [e for e in registry.audit("dev-a") if e.action == "ticket-closed"]
    assert entry.operator == "rui", entry
    assert entry.changes["repair"] == "sensor connector reseated"
    again = cli(location, "services", "tickets", "close", str(ticket_id), "--repair", "x",
                ok=False)
    assert again.exit_code == ExitCode.BAD_INPUT and "was closed at" in again.output
    unknown = cli(location, "services", "tickets", "close", "999", "--repair", "x", ok=False)
    assert unknown.exit_code == ExitCode.BAD_INPUT and "no ticket 999" in unknown.output
