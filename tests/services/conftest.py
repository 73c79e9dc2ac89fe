"""Fixtures for the services' tests: the fleet tests' own (a registry seeded with their
devices and SIMs, on SQLite and on a real PostgreSQL server; a real Mosquitto)."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS / "fleet"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleethelp  # noqa: E402

_fleet = fleethelp.load_module("fleet_conftest", TESTS / "fleet" / "conftest.py")
postgres, location, registry, mosquitto = (_fleet.postgres, _fleet.location, _fleet.registry,
                                           _fleet.mosquitto)
