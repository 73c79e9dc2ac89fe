"""The team pages as they run in production, for the tests and the bench: a `musket fleet web`
process on a free loopback port, and Debian's Chromium driven by Playwright (never a
downloaded browser)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from musket import system

MUSKET = Path(sys.executable).parent / "musket"
# What lets Chromium start quickly and stay off the network on an offline machine.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebServer:
    """`musket fleet web --registry LOCATION` on a free port until stop()."""

    def __init__(self, location: str, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "web.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, MUSKET_WEB_SECRET="web-tests-session-key")
        self.proc = subprocess.Popen(
            [str(MUSKET), "fleet", "web", "--registry", location, "--port", str(self.port)],
            stdout=self._log, stderr=self._log, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(self.url + "/login", timeout=2).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"musket fleet web did not start: "
                                       f"{self.log_path.read_text(errors='replace')}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self._log.close()


def launch_chromium(playwright, profile: Path):
    """Debian's Chromium, headless, with a fresh profile folder."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(system.require("chromium")),
        args=CHROMIUM_FLAGS, headless=True, viewport={"width": 1400, "height": 1000})


def log_in(page, url: str, name: str, password: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("#login")
    page.wait_for_load_state()
