"""The team pages with a large fleet: DEVICES devices (a week of status and telemetry taken
through the fleet service's store, the services' sites, orders and tickets) in a SQLite
registry, `musket fleet web` serving it, and Debian's headless Chromium loading each team's
page as a logged-in operator.

First paint is Chromium's own first-contentful-paint of the page (the Paint Timing API,
measured from the navigation's start), each page loaded LOADS times after one warm-up load;
the median per page is printed, and the slowest page's median is the figure.

Figures:
  services.page_ms   the slowest team page's median first paint, with DEVICES devices
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "web"))

import webseed  # noqa: E402
import webserver  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from musket.registry import Registry  # noqa: E402
from musket.web import users  # noqa: E402

DEVICES = int(os.environ.get("MUSKET_BENCH_WEB_DEVICES", "10000"))
DAYS = int(os.environ.get("MUSKET_BENCH_WEB_DAYS", "7"))
LOADS = 5
PAGES = ("/engineering", "/operations", "/finance", "/customers")
PASSWORD = "bench-password-1"


def first_paint_ms(page, url: str) -> float:
    page.goto(url, wait_until="load")
    # The entry is reported once the frame is painted, which may come after the load event.
    return page.evaluate("""() => new Promise(resolve => new PerformanceObserver(
        (list, observer) => {
            const fcp = list.getEntriesByName('first-contentful-paint')[0];
            if (fcp) { observer.disconnect(); resolve(fcp.startTime); }
        }).observe({type: 'paint', buffered: true}))""")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="musket-bench-web-") as tmp:
        folder = Path(tmp)
        location = str(folder / "registry.sqlite")
        started = time.monotonic()
        with Registry.open(location, migrate=True) as registry:
            webseed.seed_registry(registry, folder, DEVICES)
            taken = webseed.seed_week(registry.engine, DEVICES, DAYS)
            webseed.seed_services(registry.engine, DEVICES)
            users.add_user(registry.engine, "bench", "admin", PASSWORD, webseed.ACTOR)
        print(f"{DEVICES} devices, {taken} messages over {DAYS} days stored in "
              f"{time.monotonic() - started:.0f} s", flush=True)
        server = webserver.WebServer(location, folder)
        try:
            with sync_playwright() as p:
                browser = webserver.launch_chromium(p, folder / "chromium-profile")
                page = browser.new_page()
                webserver.log_in(page, server.url, "bench", PASSWORD)
                medians = {}
                for path in PAGES:
                    first_paint_ms(page, server.url + path)  # warm-up: caches, plotly.js
                    times = [first_paint_ms(page, server.url + path) for _ in range(LOADS)]
                    medians[path] = statistics.median(times)
                    print(f"{path}: first paint median {medians[path]:.0f} ms "
                          f"(of {', '.join(f'{t:.0f}' for t in times)})", flush=True)
                browser.close()
        finally:
            server.stop()
    print(f"FIGURE services.page_ms {max(medians.values()):.1f} ms")


if __name__ == "__main__":
    main()
