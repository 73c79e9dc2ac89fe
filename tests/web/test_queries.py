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
