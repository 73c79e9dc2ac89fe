"""Console and end-of-line fixtures: the registry on SQLite and on a real PostgreSQL server
(the host tests' throwaway server, reused)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from musket.registry import Registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_units import (  # noqa: E402,F401 - fixtures
    ACTOR,
    ICCIDS,
    TESTS,
    broker,
    load_test_module,
    people,
    units,
)

# One throwaway PostgreSQL server per test session, and the registry's location on SQLite and
# on it: the host tests' fixtures.
postgres = load_test_module(TESTS / "host" / "conftest.py", "host_conftest").postgres
location = load_test_module(TESTS / "host" / "test_registry.py", "host_test_registry").location


@pytest.fixture
def registry(location, tmp_path):
    """A migrated registry holding the SIMs of ICCIDS in inventory."""
    sims = tmp_path / "sims.csv"
    sims.write_text("ICCID,plan,state\n" + "".join(f"{i},iot-eu,inventory\n" for i in ICCIDS))
    with Registry.open(location, migrate=True) as r:
        r.import_sims(sims, ACTOR)
        yield r
