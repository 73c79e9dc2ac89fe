"""The team pages' own queries where the browser tests cannot reach them: factory yield when
the end-of-line tables exist (their migration, 0004, belongs to the factory part), and none
when they do not."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa

from musket.registry import Registry
from musket.web import queries


def test_factory_yield_is_none_without_the_end_of_line_tables(tmp_path):
    with Registry.open(str(tmp_path / "r.sqlite"), migrate=True) as registry:
        assert queries.factory_yield(registry.engine) is None


def test_factory_yield_counts_tests_and_passes_per_day(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'eol.sqlite'}")
    results = sa.Table("eol_results", sa.MetaData(),
                       sa.Column("id", sa.Integer, primary_key=True),
                       sa.Column("device_id", sa.String(64), nullable=False),
                       sa.Column("at", sa.DateTime(timezone=True), nullable=False),
                       sa.Column("passed", sa.Boolean, nullable=False))
    results.create(engine)
    rows = [("a", datetime(2026, 12, 2, 9, tzinfo=UTC), True),
            ("b", datetime(2026, 12, 2, 10, tzinfo=UTC), False),
            ("b", datetime(2026, 12, 3, 9, tzinfo=UTC), True),
            ("c", datetime(2026, 11, 1, 9, tzinfo=UTC), False)]  # before the week: not counted
    with engine.begin() as conn:
        conn.execute(sa.insert(results), [{"device_id": d, "at": t, "passed": p}
                                          for d, t, p in rows])
    got = queries.factory_yield(engine, days=3, today=date(2026, 12, 3))
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
