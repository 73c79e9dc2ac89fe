"""Fixtures for the team pages' tests: a SQLite registry holding a week of 20 devices (seeded
through the parts' own code, tests/web/webseed.py), one operator per role, `musket fleet web`
serving it, and Debian's headless Chromium with a fresh profile per test.

Screenshots go to test-artifacts/web/ at the top of the repository (gitignored; see
docs/tests.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))  # pgserver
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fleet"))  # fleethelp

import webserver  # noqa: E402
from fleethelp import load_module  # noqa: E402
from webhelp import serve_week  # noqa: E402

# The host tests' throwaway PostgreSQL server (tests/host/conftest.py), the same fixture.
postgres = load_module("host_conftest", Path(__file__).resolve().parents[1] / "host"
                       / "conftest.py").postgres


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The registry's location (SQLite) and the running pages' URL."""
    folder = tmp_path_factory.mktemp("web")
    yield from serve_week(str(folder / "registry.sqlite"), folder)


@pytest.fixture
def browser(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = webserver.launch_chromium(p, tmp_path / "chromium-profile")
        yield context
        context.close()


@pytest.fixture
def engine(site):
    from musket.registry import Registry

    with Registry.open(site["location"]) as registry:
        yield registry.engine
