"""Contract S's views over the services' tables, on SQLite and PostgreSQL: customers and sites
from a CSV import, statements from committed counter events, orders through their states
(audited; a bad state or transition refused), tickets."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, select
from svchelp import T0, Device, add_tariff, import_sites, take

from musket.registry.schema import audit
from musket.registry.services_schema import svc_consumables, svc_orders
from musket.services import views
from musket.services.errors import OrderStateError, ServicesInput

SITES = [("dev-a", "acme", "coffee", "Acme HQ, floor 2"),
         ("dev-b", "acme", "coffee", "Acme HQ, lobby"),
         ("dev-c", "bistro", "water", "Bistro Nord")]


def test_customers_and_sites_from_the_import(registry, tmp_path):
    assert import_sites(registry.engine, tmp_path, SITES) == {"sites": 3, "customers": 2}
    assert views.customers(registry.engine) == [
        {"customer_id": "acme", "name": "acme", "devices": 2},
        {"customer_id": "bistro", "name": "bistro", "devices": 1}]
    assert [s["device_id"] for s in views.sites(registry.engine, "acme")] == ["dev-a", "dev-b"]
    assert views.sites(registry.engine)[2] == {"device_id": "dev-c", "customer_id": "bistro",
                                               "product": "water", "location": "Bistro Nord"}


def test_statements_count_the_committed_events_of_the_period(registry, tmp_path):
    import_sites(registry.engine, tmp_path, SITES)
    add_tariff(registry.engine, "product:coffee", {"brews": 0.25}, minimum=5)
    add_tariff(registry.engine, "customer:bistro", {"litres": 0.1}, minimum=0, currency="USD")
    a, c = Device("dev-a"), Device("dev-c")
    november = T0 - 3600
    first = a.use("brews", 3, november)
    take(registry.engine, first, a.use("brews", 30, T0 + 60), c.use("litres", 7, T0 + 90))
    take(registry.engine, first, a.use("brews", 2, T0 + 120))  # a repeat: nothing new
    out = views.statements(registry.engine, "2026-12")
    assert out == [
        {"customer_id": "acme", "period": "2026-12", "currency": "EUR",
         "lines": [{"counter": "brews", "quantity": 32.0, "unit_price": 0.25,
                    "amount": 8.0}], "minimum": 5.0, "total": 8.0},
        {"customer_id": "bistro", "period": "2026-12", "currency": "USD",
         "lines": [{"counter": "litres", "quantity": 7.0, "unit_price": 0.1, "amount": 0.7}],
         "minimum": 0.0, "total": 0.7}]
    november_acme = views.statements(registry.engine, "2026-11", "acme")[0]
    assert november_acme["lines"][0]["quantity"] == 3.0 and november_acme["total"] == 5.0
    with pytest.raises(ServicesInput):
        views.statements(registry.engine, "2026-13")


def test_an_order_moves_through_its_states_audited_and_resets_the_level(registry, tmp_path):
    import_sites(registry.engine, tmp_path, SITES)
    a = Device("dev-a")
    take(registry.engine, a.use("brews", 40, T0))
    from musket.registry.core import now
    with registry.engine.begin() as conn:
        conn.execute(insert(svc_consumables).values(
            device_id="dev-a", consumable="beans", counter="brews", installed_total=0,
            installed=now(), generation=0))
        conn.execute(insert(svc_orders).values(
            device_id="dev-a", customer_id="acme", consumable="beans", generation=0,
            quantity=1, state="placed", placed=now(), arrives=now()))
    (order,) = views.orders(registry.engine, customer_id="acme")
    assert order["state"] == "placed" and order["shipped"] is None
    with pytest.raises(OrderStateError):
        views.set_order_state(registry.engine, order["order_id"], "lost", "ana")
    views.set_order_state(registry.engine, order["order_id"], "shipped", "ana")
    with pytest.raises(OrderStateError):
        views.set_order_state(registry.engine, order["order_id"], "placed", "ana")
    views.set_order_state(registry.engine, order["order_id"], "installed", "ana")
    (order,) = views.orders(registry.engine, state="installed")
    assert order["shipped"] and order["installed"]
    with registry.engine.connect() as conn:
        level = conn.execute(select(svc_consumables)).one()
        rows = conn.execute(select(audit.c.action, audit.c.changes)
                            .where(audit.c.action == "order-state")).all()
    assert (level.installed_total, level.generation) == (40, 1)
    assert [json.loads(c)["state"] for _, c in rows] == [["placed", "shipped"],
                                                         ["shipped", "installed"]]
    assert views.tickets(registry.engine, state="open") == []
