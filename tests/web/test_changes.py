"""Who may change what on the team pages, in headless Chromium against the real server: the
controls a role may not use are absent, a forged POST is refused and changes nothing, a form
without the session's CSRF token is refused, and every change made is audited with the
operator's name."""

from __future__ import annotations

import json

from sqlalchemy import func, select
from webhelp import DEVICES, PASSWORD, screenshot
from webseed import device_id, iccid
from webserver import log_in

from musket.registry.schema import audit, sims
from musket.registry.services_schema import svc_orders


def _sim_state(engine, n: int) -> str:
    with engine.connect() as conn:
        return conn.execute(select(sims.c.state).where(sims.c.iccid == iccid(n))).scalar_one()


def _audit_rows(engine, action: str) -> list:
    with engine.connect() as conn:
        return conn.execute(select(audit).where(audit.c.action == action)
                            .order_by(audit.c.id)).all()


def _csrf(page) -> str:
    return page.get_attribute("header input[name=csrf]", "value")


def test_finance_cannot_pause_a_sim(site, browser, engine):
    page = browser.new_page()
    log_in(page, site["url"], "finance", PASSWORD)
    page.goto(site["url"] + "/operations")
    assert page.locator("#no-sim-actions").count() == 1
    assert page.locator("#sims input[type=checkbox]").count() == 0
    assert page.locator("#apply").count() == 0
    screenshot(page, "operations-as-finance")
    before_state, before_audit = _sim_state(engine, 3), len(_audit_rows(engine, "sim-state"))
    # The same POST the operations page makes, with this session's own valid token.
    answer = page.request.post(site["url"] + "/operations/sims", form={
        "csrf": _csrf(page), "iccid": iccid(3), "action": "pause",
        "reason": "forged by finance"}, max_redirects=0)
    assert answer.status == 403
    assert "finance role may not" in answer.text()
    assert _sim_state(engine, 3) == before_state
    assert len(_audit_rows(engine, "sim-state")) == before_audit


def test_operations_pauses_a_sim_and_it_is_audited(site, browser, engine):
    page = browser.new_page()
    log_in(page, site["url"], "operations", PASSWORD)
    page.goto(site["url"] + "/operations?q=" + iccid(5))
    page.check(f"#pick-{iccid(5)}")
    page.select_option("#action", "pause")
    page.fill("#reason", "customer moved out")
    page.click("#apply")
    assert "1 SIMs now suspended (pause)" in page.inner_text("#done")
    assert _sim_state(engine, 5) == "suspended"
    row = _audit_rows(engine, "sim-state")[-1]
    assert (row.subject, row.operator, row.station) == (iccid(5), "operations", "musket-web")
    assert "customer moved out" in row.changes
    assert "customer moved out" in page.inner_text("#audit")
    screenshot(page, "operations-paused")


def test_a_post_without_the_sessions_csrf_token_is_refused(site, browser, engine):
    page = browser.new_page()
    log_in(page, site["url"], "operations", PASSWORD)
    page.goto(site["url"] + "/operations")
    before = _sim_state(engine, 7)
    for token in ("", "not-the-token"):
        answer = page.request.post(site["url"] + "/operations/sims", form={
            "csrf": token, "iccid": iccid(7), "action": "pause", "reason": "forged"},
            max_redirects=0)
        assert answer.status == 403
    assert _sim_state(engine, 7) == before


def test_a_post_without_a_login_is_refused(site, browser, engine):
    page = browser.new_page()
    before = _sim_state(engine, 8)
    answer = page.request.post(site["url"] + "/operations/sims", form={
        "iccid": iccid(8), "action": "pause", "reason": "no login"}, max_redirects=0)
    assert answer.status == 303 and "/login" in answer.headers["location"]
    assert _sim_state(engine, 8) == before


def _order(engine, device: str):
    with engine.connect() as conn:
        return conn.execute(select(svc_orders).where(svc_orders.c.device_id == device)).first()


def test_customer_success_ships_an_order_and_it_is_audited(site, browser, engine):
    page = browser.new_page()
    log_in(page, site["url"], "customer_success", PASSWORD)
    order = _order(engine, device_id(0))
    assert order.state == "placed"
    page.click(f"#order-{order.order_id}-shipped")
    page.wait_for_load_state()
    assert _order(engine, device_id(0)).state == "shipped"
    row = _audit_rows(engine, "order-state")[-1]
    assert (row.subject, row.operator) == (device_id(0), "customer_success")
    assert json.loads(row.changes)["state"] == ["placed", "shipped"]
    screenshot(page, "customers-shipped")


def test_engineering_cannot_change_an_order(site, browser, engine):
    page = browser.new_page()
    log_in(page, site["url"], "engineering", PASSWORD)
    page.goto(site["url"] + "/customers")
    assert page.locator("#orders button").count() == 0
    order = _order(engine, device_id(3))
    with engine.connect() as conn:
        audits = conn.execute(select(func.count()).select_from(audit)).scalar_one()
    answer = page.request.post(f"{site['url']}/customers/orders/{order.order_id}",
                               form={"csrf": _csrf(page), "state": "installed"},
                               max_redirects=0)
    assert answer.status == 403
    assert _order(engine, device_id(3)).state == order.state
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit)).scalar_one() == audits


def _plan(engine, n: int) -> str:
    with engine.connect() as conn:
        return conn.execute(select(sims.c.plan).where(sims.c.iccid == iccid(n))).scalar_one()


def test_finance_moves_a_sim_to_another_plan_and_it_is_audited(site, browser, engine):
    spare = DEVICES + 1  # a SIM in stock: the month's bill of the others stays as it was
    page = browser.new_page()
    log_in(page, site["url"], "finance", PASSWORD)
    page.fill("#plan-iccids", iccid(spare))
    page.select_option("#plan", "iot-eu-pool-1gb")
    page.fill("#plan-reason", "pooled from next month")
    page.click("#change-plan")
    assert "1 SIMs now on iot-eu-pool-1gb" in page.inner_text("#done")
    assert _plan(engine, spare) == "iot-eu-pool-1gb"
    row = _audit_rows(engine, "sim-plan")[-1]
    assert (row.subject, row.operator) == (iccid(spare), "finance")
    assert json.loads(row.changes) == {"plan": ["iot-eu-10mb", "iot-eu-pool-1gb"],
                                       "reason": "pooled from next month"}


def test_customer_success_cannot_change_a_plan(site, browser, engine):
    spare = DEVICES + 2
    page = browser.new_page()
    log_in(page, site["url"], "customer_success", PASSWORD)
    page.goto(site["url"] + "/finance")
    assert page.locator("#no-plan-change").count() == 1
    assert page.locator("#plan-form").count() == 0
    before = len(_audit_rows(engine, "sim-plan"))
    answer = page.request.post(site["url"] + "/finance/plans", form={
        "csrf": _csrf(page), "iccids": iccid(spare), "plan": "iot-eu-pool-1gb",
        "reason": "forged by customer success"}, max_redirects=0)
    assert answer.status == 403
    assert _plan(engine, spare) == "iot-eu-10mb"
    assert len(_audit_rows(engine, "sim-plan")) == before
