"""Fixtures for the fleet service's tests: a registry on SQLite and on a real PostgreSQL
server, seeded with devices and their SIMs, and a real Mosquitto (the uplink tests' broker)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS / "host"))  # pgserver: the throwaway PostgreSQL server
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleethelp  # noqa: E402

# The host tests' throwaway PostgreSQL server (tests/host/conftest.py), the same fixture.
postgres = fleethelp.load_module("host_conftest", TESTS / "host" / "conftest.py").postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "registry.sqlite")
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def registry(location, tmp_path):
    """A migrated registry holding fleethelp.DEVICES, each bound to its SIM, and SPARE_SIMS
    more in inventory."""
    from musket.registry import Registry

    with Registry.open(location, migrate=True) as r:
        fleethelp.seed(r, tmp_path)
        yield r


@pytest.fixture
def mosquitto(tmp_path):
    server = fleethelp.broker_module().Mosquitto(tmp_path / "broker", fleethelp.broker_users())
    yield server
    server.stop()
