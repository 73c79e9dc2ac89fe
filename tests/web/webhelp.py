"""What the team pages' tests share: the week's size, the operators' password, serving a seeded
registry, and saving screenshots to test-artifacts/web/ (gitignored; see docs/tests.md)."""

from __future__ import annotations

from pathlib import Path

import webseed
import webserver

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
DEVICES = 20
PASSWORD = "web-test-password"
# One operator per role, named after it.
ROLES = ("engineering", "operations", "finance", "customer_success", "admin")


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


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
