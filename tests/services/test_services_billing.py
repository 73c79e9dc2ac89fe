"""Billing on SQLite: a month is [first second, next month's first second) of device time;
amounts round half-up to the cent; a customer without a tariff gets an empty statement; CSV and
JSON are the same bytes every time."""

from __future__ import annotations

import pytest
from svchelp import Device, add_tariff, import_sites, take

from musket.services import billing


@pytest.fixture
def location(tmp_path):
    return str(tmp_path / "registry.sqlite")


def test_month_bounds_rounding_and_stable_output(registry, tmp_path):
    import_sites(registry.engine, tmp_path, [("dev-a", "acme", "coffee", "HQ"),
                                             ("dev-b", "zed", "tea", "Zed's")])
    add_tariff(registry.engine, "product:coffee", {"brews": 0.125})
    start, end = billing.period_bounds("2026-12")
    assert (start, end) == (1_796_083_200, 1_798_761_600)
    a = Device("dev-a")
    take(registry.engine, a.use("brews", 1, start - 1), a.use("brews", 3, start),
         a.use("brews", 2, end - 10), a.use("brews", 5, end))
    (acme, zed) = billing.statements(registry.engine, "2026-12")
    assert acme["lines"] == [{"counter": "brews", "quantity": 5.0, "unit_price": 0.125,
                              "amount": 0.63}]  # 0.625 rounds half-up
    assert zed == {"customer_id": "zed", "period": "2026-12", "currency": "", "lines": [],
                   "minimum": 0.0, "total": 0.0}
    csv_text = billing.to_csv([acme, zed])
    assert csv_text.splitlines() == [
        ",".join(billing.CSV_FIELDS), "acme,2026-12,EUR,brews,5.0,0.125,0.63,0.0,0.63",
        "zed,2026-12,,,,,,0.0,0.0"]
    again = billing.statements(registry.engine, "2026-12")
    assert billing.to_csv(again) == csv_text
    assert billing.to_json(again) == billing.to_json([acme, zed])
    assert billing.statements(registry.engine, "2027-01", "acme")[0]["lines"][0][
        "quantity"] == 5.0
