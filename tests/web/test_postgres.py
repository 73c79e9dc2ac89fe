"""The team pages over a registry on a real PostgreSQL server (the per-day counts group by
day with the server's own date functions there): every team's page and its plots in headless
Chromium, with the same figures as over SQLite."""

from __future__ import annotations

import json

import pytest
from webhelp import DEVICES, PASSWORD, screenshot, serve_week
from webserver import log_in


@pytest.fixture(scope="module")
def pg_site(postgres, tmp_path_factory):
    yield from serve_week(postgres.new_database(), tmp_path_factory.mktemp("web-pg"))


@pytest.mark.parametrize("path", ["/engineering", "/operations", "/finance", "/customers"])
def test_every_team_page_over_postgresql(pg_site, browser, path):
    page = browser.new_page()
    log_in(page, pg_site["url"], "admin", PASSWORD)
    page.goto(pg_site["url"] + path)
    page.wait_for_selector("div.charts[data-drawn]", timeout=30_000)
    assert page.locator("div.chart[data-drawn]").count() >= 1
    if path == "/engineering":
        sessions = json.loads(page.get_attribute("#chart-sessions", "data-chart"))
        assert sum(sessions["series"]["sessions"]) == DEVICES * 7
        assert page.inner_text("#n-devices") == str(DEVICES)
    screenshot(page, "postgresql-" + path.strip("/"))
