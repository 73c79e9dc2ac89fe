"""Each team's page in headless Chromium shows the seeded week (figures checked against what the
seed sent, computed here independently), with a screenshot of each saved as an artifact."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from webhelp import DEVICES, PASSWORD, screenshot
from webseed import CUSTOMERS, SPARE_SIMS, device_id
from webserver import log_in

from musket.services import views as services

DAYS = 7


def _chart(page, name: str) -> dict:
    # The chart is drawn by plotly once the library has loaded; its data is the div's spec.
    page.wait_for_selector(f"#chart-{name}[data-drawn]", timeout=30_000)
    return json.loads(page.get_attribute(f"#chart-{name}", "data-chart"))


def _uses(n: int, d: int) -> int:
    return 2 + n % 5 + d % 3  # the seed's uses of device n on day d


def test_engineering_shows_health_and_the_weeks_connections(site, browser):
    page = browser.new_page()
    log_in(page, site["url"], "engineering", PASSWORD)
    assert page.url.endswith("/engineering")
    assert page.inner_text("#n-devices") == str(DEVICES)
    sessions = _chart(page, "sessions")
    assert sum(sessions["series"]["sessions"]) == DEVICES * DAYS
    uses = _chart(page, "uses")
    assert sum(uses["series"]["brews"]) == sum(_uses(n, d) for n in range(DEVICES)
                                               for d in range(DAYS))
    reboots = _chart(page, "reboots")
    assert dict(zip(reboots["x"], reboots["series"][""], strict=True)) == \
        {"power": DEVICES, "wdt": 2 * 7, "panic": 6}  # devices n % 3 == 1 and == 2
    rows = page.locator("#devices tr")
    assert rows.count() == DEVICES + 1
    assert "MODEM_HUNG" in page.inner_text("#devices")
    images = [r for r in page.inner_text("#devices").splitlines() if "(image 1.29.0)" in r]
    assert len(images) == len(range(0, DEVICES, 4)), images  # the devices n % 4 == 0
    screenshot(page, "engineering")
    page.click("text=dev-00004")
    assert "image 1.29.0" in page.inner_text("main")
    assert page.locator("#sessions tr").count() == DAYS + 1  # one session a day
    assert "MODEM_HUNG" in page.inner_text("#health")
    screenshot(page, "engineering-device")


def test_engineering_filters_and_pages_on_the_server(site, browser):
    page = browser.new_page()
    log_in(page, site["url"], "engineering", PASSWORD)
    page.goto(site["url"] + "/engineering?only=crashed")
    crashed = [n for n in range(DEVICES) if n % 3 == 2]
    assert page.locator("#devices tr").count() == len(crashed) + 1
    page.goto(site["url"] + "/engineering?q=dev-0001")
    assert page.locator("#devices tr").count() == 10 + 1


def test_operations_shows_sim_inventory(site, browser):
    page = browser.new_page()
    log_in(page, site["url"], "operations", PASSWORD)
    assert page.url.endswith("/operations")
    assert page.inner_text("#state-inventory") == str(SPARE_SIMS)
    in_devices = sum(int(page.inner_text(f"#state-{s}"))
                     for s in ("bound", "active", "suspended")
                     if page.locator(f"#state-{s}").count())
    assert in_devices == DEVICES
    _chart(page, "states")
    assert page.locator("#no-factory").count() == 1  # no end-of-line tables: said, no error
    assert page.locator("#sims tr").count() == DEVICES + SPARE_SIMS + 1
    screenshot(page, "operations")


def test_finance_shows_data_cost_and_statements(site, browser):
    page = browser.new_page()
    log_in(page, site["url"], "finance", PASSWORD)
    assert page.url.endswith("/finance")
    data = _chart(page, "data")
    assert sum(data["series"]["devices"]) > 0
    assert page.locator("#usage tr").count() == DEVICES + 1
    plan_row = page.locator("#plans tr", has_text="iot-eu-10mb").inner_text().split("\t")
    assert plan_row[1] == str(DEVICES)  # every bound SIM is on the one plan, billed
    assert plan_row[4] == f"{DEVICES * 1.5:.2f} EUR"  # each within its 10 MB: the fee alone
    month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    first_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - \
        timedelta(days=DAYS - 1)
    statements = page.inner_text("#statements")
    for c, customer in enumerate(CUSTOMERS):
        expected = sum(_uses(n, d) for n in range(c, DEVICES, len(CUSTOMERS))
                       for d in range(DAYS) if first_day + timedelta(days=d) >= month_start)
        row = page.locator("#statements tr", has_text=customer).inner_text()
        assert f"brews: {expected:.1f} " in row, (customer, row, statements)
    screenshot(page, "finance")


def test_customer_success_shows_status_tickets_and_orders(site, browser, engine):
    page = browser.new_page()
    log_in(page, site["url"], "customer_success", PASSWORD)
    assert page.url.endswith("/customers")
    assert page.locator("#customers tr").count() == len(CUSTOMERS) + 1
    # The rules engine opened a ticket for each device whose modem hung (webseed.diagnosis).
    hung = {device_id(n) for n in range(DEVICES) if n % 5 in (3, 4)}
    tickets = services.tickets(engine, "open")
    assert {t["device_id"] for t in tickets} == hung
    assert page.locator("#tickets tr").count() == len(tickets) + 1
    orders = services.orders(engine)
    assert orders and page.locator("#orders tr").count() == len(orders) + 1
    chart = _chart(page, "orders")
    assert sum(chart["series"]["orders placed"]) == len(orders)
    assert sum(chart["series"]["tickets opened"]) == len(hung)
    screenshot(page, "customers")


@pytest.mark.parametrize("path", ["/engineering", "/operations", "/finance", "/customers",
                                  "/engineering/device/dev-00001"])
def test_every_page_needs_a_login(site, browser, path):
    page = browser.new_page()
    page.goto(site["url"] + path)
    assert "/login" in page.url
    assert page.locator("#login").count() == 1
    assert page.locator("#devices, #health, #sims, #usage, #customers").count() == 0


def test_a_wrong_password_is_refused(site, browser):
    page = browser.new_page()
    log_in(page, site["url"], "finance", "not-the-password")
    assert page.locator("#login-failed").count() == 1
    page.goto(site["url"] + "/finance")
    assert "/login" in page.url
