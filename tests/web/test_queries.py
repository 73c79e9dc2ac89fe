"""The team pages' own queries where the browser tests cannot reach them: factory yield per
day from the end-of-line results (musket.registry.eol's yield report), none without results,
and the device and SIM lists a page at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa

from musket.registry import Registry
from musket.registry.schema import devices, eol_results
from musket.web import queries


def test_factory_yield_is_none_without_end_of_line_results(tmp_path):
    with Registry.open(str(tmp_path / "r.sqlite"), migrate=True) as registry:
        assert queries.factory_yield(registry.engine) is None


def test_factory_yield_counts_tests_and_passes_per_day(tmp_path):
    rows = [("a", datetime(2026, 12, 2, 9, tzinfo=UTC), True, "line-1"),
            ("b", datetime(2026, 12, 2, 10, tzinfo=UTC), False, "line-2"),
            ("b", datetime(2026, 12, 3, 9, tzinfo=UTC), True, "line-1"),
            ("c", datetime(2026, 11, 1, 9, tzinfo=UTC), False, "line-1")]  # before: not counted
    with Registry.open(str(tmp_path / "r.sqlite"), migrate=True) as registry:
        with registry.engine.begin() as conn:
            conn.execute(sa.insert(devices), [
                {"device_id": d, "imei": f"86971505399000{n}", "chip_id": f"240ac400000{n}",
                 "created": datetime(2026, 11, 1, tzinfo=UTC)} for n, d in enumerate("abc")])
            conn.execute(sa.insert(eol_results), [
                {"device_id": d, "at": t, "passed": p, "station": st, "operator": "ana",
                 "codes": "[]" if p else '["SENSOR_MISSING:sht"]', "measurements": "{}",
                 "seconds": 7.0} for d, t, p, st in rows])
        got = queries.factory_yield(registry.engine, days=3, today=date(2026, 12, 3))
    assert got == {"days": ["2026-12-01", "2026-12-02", "2026-12-03"], "tested": [0, 2, 1],
                   "passed": [0, 1, 1], "yield": 66.7}


def test_devices_and_sims_come_a_page_at_a_time(tmp_path):
    import webseed

    with Registry.open(str(tmp_path / "r.sqlite"), migrate=True) as registry:
        webseed.seed_registry(registry, tmp_path, 5)
        engine = registry.engine
        first = queries.devices_page(engine, 1, per_page=2)
        last = queries.devices_page(engine, 9, per_page=2)  # past the end: the last page
        assert [d["device_id"] for d in first.rows] == ["dev-00000", "dev-00001"]
        assert (first.pages, first.total) == (3, 5)
        assert (last.page, [d["device_id"] for d in last.rows]) == (3, ["dev-00004"])
        assert queries.devices_page(engine, prefix="dev-00003").total == 1
        assert queries.devices_page(engine, only="never").total == 5  # none heard from yet
        in_stock = queries.sims_page(engine, state="inventory")
        assert in_stock.total == webseed.SPARE_SIMS
        assert all(s["device_id"] is None for s in in_stock.rows)
        assert queries.sims_page(engine, prefix=webseed.iccid(2)).rows[0]["device_id"] == \
            webseed.device_id(2)
