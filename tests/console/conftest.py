"""Console and end-of-line fixtures: the registry on SQLite and on a real PostgreSQL server
(the host tests' throwaway server, reused)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from musket.registry import Registry

_HOST_TESTS = Path(__file__).resolve().parent.parent / "host"
sys.path.insert(0, str(_HOST_TESTS))
_spec = importlib.util.spec_from_file_location("host_tests_conftest", _HOST_TESTS / "conftest.py")
_host = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_host)
postgres = _host.postgres  # one throwaway PostgreSQL server per test session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_units import ACTOR, ICCIDS, people, units  # noqa: E402,F401 - fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "registry.sqlite")
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def registry(location, tmp_path):
    """A migrated registry holding the SIMs of ICCIDS in inventory."""
    sims = tmp_path / "sims.csv"
    sims.write_text("ICCID,plan,state\n" + "".join(f"{i},iot-eu,inventory\n" for i in ICCIDS))
    with Registry.open(location, migrate=True) as r:
        r.import_sims(sims, ACTOR)
        yield r
