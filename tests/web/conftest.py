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

import webseed  # noqa: E402
import webserver  # noqa: E402
from fleethelp import load_module  # noqa: E402 - on sys.path through webseed

# The host tests' throwaway PostgreSQL server (tests/host/conftest.py), the same fixture.
postgres = load_module("host_conftest", Path(__file__).resolve().parents[1] / "host"
                       / "conftest.py").postgres

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
DEVICES = 20
PASSWORD = "web-test-password"
# One operator per role, named after it.
ROLES = ("engineering", "operations", "finance", "customer_success", "admin")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The registry's location (SQLite) and the running pages' URL."""
    folder = tmp_path_factory.mktemp("web")
    yield from serve_week(str(folder / "registry.sqlite"), folder)


def serve_week(location: str, folder: Path):
    """Seeds the registry at `location` and serves it until the generator is closed."""
    from musket.registry import Registry
    from musket.web import users

    with Registry.open(location, migrate=True) as registry:
        webseed.seed_registry(registry, folder, DEVICES)
        webseed.seed_week(registry.engine, DEVICES)
        for role in ROLES:
            users.add_user(registry.engine, role, role, PASSWORD, webseed.ACTOR)
    server = webserver.WebServer(location, folder)
    yield {"location": location, "url": server.url}
    server.stop()


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


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
