"""Data per SIM, plans, cost, forecast and alerts, the carrier's file and reconciliation, and
SIM states in bulk, on SQLite and PostgreSQL, through the library and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner
from fleethelp import ACTOR, PLAN, bind, device_iccid, iccid, spare_iccids, status
from sqlalchemy import func, select

from musket.cli import main
from musket.errors import ExitCode
from musket.fleet import plans, sims, usage
from musket.fleet.store import FleetStore, Incoming
from musket.registry.fleet_schema import fleet_alerts, fleet_usage

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
MB = 1_000_000
PLANS = f"""
# test plans
[plans.{PLAN}]
monthly_fee = 1.50
included_mb = 10
overage_per_mb = 0.40
pooled = false

[plans.pool-eu]
monthly_fee = 2
included_mb = 5
overage_per_mb = 0.5
pooled = true
currency = "EUR"
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def report(registry, device_id, tx, rx, at):
    FleetStore(registry.engine).take([Incoming(f"d/{device_id}/s", status(tx=tx, rx=rx),
                                               False, at)])


def cli(registry, *args):
    result = CliRunner().invoke(main, [*args, "--registry", _location(registry)])
    return result


def _location(registry):
    url = registry.engine.url
    return url.database if url.get_backend_name() == "sqlite" else \
        url.render_as_string(hide_password=False)


def test_a_plan_file_with_a_wrong_type_is_refused_with_line_and_field(registry, tmp_path):
    bad = write(tmp_path, "plans.toml", PLANS.replace("included_mb = 5", 'included_mb = "5"'))
    result = cli(registry, "fleet", "plans", "import", str(bad))
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "plans.toml:11: plan pool-eu: included_mb is '5', expected a number" in result.output
    assert plans.plans(registry.engine) == {}  # nothing stored
    unknown = write(tmp_path, "p2.toml", PLANS.replace("pooled = true", "pooled = true\nfee=1"))
    with pytest.raises(plans.PlanFileError, match=r"p2.toml:14: plan pool-eu: unknown field"):
        plans.read_plans(unknown)
    good = cli(registry, "fleet", "plans", "import", str(write(tmp_path, "ok.toml", PLANS)))
    assert good.exit_code == 0, good.output
    assert set(plans.plans(registry.engine)) == {PLAN, "pool-eu"}


def test_cost_forecast_and_alerts_each_raised_once_across_restarts(registry, tmp_path):
    plans.import_plans(registry.engine, write(tmp_path, "plans.toml", PLANS))
    day1 = NOW - timedelta(days=8)
    report(registry, "dev-a", 0, 0, day1)
    report(registry, "dev-a", 6 * MB, 1 * MB, day1 + timedelta(hours=1))  # 7 MB: 70 %
    assert [(a["subject"], a["threshold"]) for a in plans.raise_alerts(registry.engine, NOW)] \
        == [(device_iccid("dev-a"), 70)]
    assert plans.raise_alerts(registry.engine, NOW) == []  # again: nothing new
    report(registry, "dev-a", 9 * MB, 3 * MB, NOW - timedelta(hours=1))  # 12 MB: 120 %
    # A new "service" (a fresh store, as after a restart) raises 90 and 100 only.
    raised = plans.raise_alerts(registry.engine, NOW)
    assert sorted(a["threshold"] for a in raised) == [90, 100]
    assert plans.raise_alerts(registry.engine, NOW + timedelta(minutes=1)) == []
    with registry.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(fleet_alerts)).scalar_one() == 3
    sims_usage, _ = plans.month_usage(registry.engine, NOW)
    a = next(s for s in sims_usage if s.iccid == device_iccid("dev-a"))
    assert a.used_bytes == 12 * MB
    assert a.cost == pytest.approx(1.50 + 2 * 0.40)  # 2 MB over at 0.40
    # 12 MB in the 9.5 days so far of a 31-day month.
    assert a.forecast_bytes == round(12 * MB / 9.5 * 31)


def test_a_pooled_plan_pools_allowances_and_shares_the_overage(registry, tmp_path):
    plans.import_plans(registry.engine, write(tmp_path, "plans.toml", PLANS))
    with registry.transaction() as conn:
        from musket.registry.schema import sims as sims_table

        conn.execute(sims_table.update().where(sims_table.c.iccid.in_(
            [device_iccid("dev-a"), device_iccid("dev-b")])).values(plan="pool-eu"))
    for device_id in ("dev-a", "dev-b"):
        report(registry, device_id, 0, 0, NOW - timedelta(hours=2))  # the base
    report(registry, "dev-a", 9 * MB, 0, NOW)
    report(registry, "dev-b", 3 * MB, 0, NOW)  # 12 MB of a 10 MB pool
    sims_usage, pools = plans.month_usage(registry.engine, NOW)
    assert pools == [{"plan": "pool-eu", "sims": 2, "used_bytes": 12 * MB,
                      "included_bytes": 10 * MB, "forecast_bytes": pools[0]["forecast_bytes"],
                      "cost": pytest.approx(4 + 1.0), "forecast_cost": pytest.approx(
                          pools[0]["forecast_cost"]), "currency": "EUR"}]
    by = {s.iccid: s for s in sims_usage}
    assert by[device_iccid("dev-a")].cost == pytest.approx(2 + 0.75)
    assert by[device_iccid("dev-b")].cost == pytest.approx(2 + 0.25)
    raised = plans.raise_alerts(registry.engine, NOW)
    assert [(a["subject"], a["threshold"]) for a in raised] == [
        ("pool:pool-eu", 70), ("pool:pool-eu", 90), ("pool:pool-eu", 100)]


def test_carrier_import_counts_unknown_iccids_and_bad_rows_and_reconciles(registry,
                                                                          tmp_path):
    day = date(2026, 12, 9)
    at = datetime(2026, 12, 9, 10, tzinfo=UTC)
    report(registry, "dev-a", 0, 0, at)
    report(registry, "dev-a", 800_000, 200_000, at + timedelta(hours=2))  # 1,000,000 B
    report(registry, "dev-b", 0, 0, at)
    report(registry, "dev-b", 500_000, 200_000, at + timedelta(hours=2))  # 700,000 B
    unknown = iccid(999)  # well formed, not in the registry
    lines = ["iccid,day,bytes",
             f"{device_iccid('dev-a')},{day},1030000",  # device 2.9 % under: fine
             f"{device_iccid('dev-b')},{day},1000000",  # device 30 % under: flagged
             "89490000000000009999,2026-12-09,5",  # not an ICCID (check digit)
             f"{device_iccid('dev-c')},2026-13-01,5",  # no such day
             f"{device_iccid('dev-c')},{day},lots",  # not bytes
             f"{unknown},{day},77"]
    path = write(tmp_path, "usage.csv", "\n".join(lines) + "\n")
    result = cli(registry, "fleet", "carrier-import", str(path), "--json")
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    report_ = json.loads(result.stdout)
    assert (report_["stored"], report_["bad_rows"], report_["unknown_iccids"]) == (2, 3, 1)
    problems = "\n".join(report_["problems"])
    assert "line 4:" in problems and "line 5: day '2026-13-01'" in problems
    assert "line 6: bytes 'lots'" in problems
    assert f"line 7: ICCID {unknown} is not in the registry" in problems
    with registry.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(fleet_usage)
                            .where(fleet_usage.c.carrier_bytes.is_not(None))).scalar_one() == 2
    rows = {r.iccid: r for r in usage.reconcile(registry.engine, day, day)}
    assert not rows[device_iccid("dev-a")].flagged(0.05)
    assert rows[device_iccid("dev-b")].flagged(0.05)
    assert rows[device_iccid("dev-b")].difference == pytest.approx(-0.3)
    flagged = cli(registry, "fleet", "reconcile", "--since", str(day), "--until", str(day))
    assert flagged.exit_code == 3, flagged.output
    assert "FLAGGED" in flagged.output


def test_a_bulk_pause_of_ten_sims_writes_ten_audit_rows(registry, tmp_path):
    ten = spare_iccids()[:10]
    for n, sim in enumerate(ten):  # ten more devices in the field, their SIMs active
        bind(registry, f"dev-x{n}", sim, 10 + n)
        registry.set_sim_state(sim, "active", "in service", ACTOR)
    before = len(registry.audit())
    path = write(tmp_path, "sims.txt", "ICCID\n" + "\n".join(ten) + "\n")
    result = cli(registry, "fleet", "sims", "pause", "--file", str(path), "--reason",
                 "customer asked to pause", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["changed"] == ten
    rows = registry.audit()[before:]
    assert len(rows) == 10
    assert {r.subject for r in rows} == set(ten)
    assert all(r.changes == {"state": ["active", "suspended"],
                             "reason": "pause: customer asked to pause"} for r in rows)
    assert {s.state for s in registry.sims() if s.iccid in ten} == {"suspended"}
    # A SIM the registry refuses is refused alone, and named.
    again = sims.change_states(registry, [ten[0], iccid(999)], "resume", "back", ACTOR)
    assert again.changed == [ten[0]]
    assert "not in the registry" in again.refused[iccid(999)]


def test_a_bad_sim_list_changes_nothing(registry, tmp_path):
    path = write(tmp_path, "sims.txt", f"{spare_iccids()[0]}\n12345\n")
    result = cli(registry, "fleet", "sims", "pause", "--file", str(path), "--reason", "x")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "line 2:" in result.output
    assert {s.state for s in registry.sims() if s.iccid in spare_iccids()} == {"inventory"}
