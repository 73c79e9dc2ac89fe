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


def load(page, url: str) -> tuple[float, float]:
    """(first paint, plots drawn) in ms from the navigation's start."""
    page.goto(url, wait_until="load")
    page.wait_for_selector("div.charts[data-drawn]", timeout=60_000)
    drawn = page.evaluate("() => performance.now()")
    return first_paint_ms(page), drawn


def first_paint_ms(page) -> float:
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
            users.add_user(registry.engine, "bench", "admin", PASSWORD, webseed.ACTOR)
        print(f"{DEVICES} devices, {taken} messages over {DAYS} days stored in "
              f"{time.monotonic() - started:.0f} s", flush=True)
        server = webserver.WebServer(location, folder)
        try:
            with sync_playwright() as p:
                browser = webserver.launch_chromium(p, folder / "chromium-profile")
                page = browser.new_page()
                webserver.log_in(page, server.url, "bench", PASSWORD)
                paints, plots = {}, {}
                for path in PAGES:
                    load(page, server.url + path)  # warm-up: caches, plotly.js
                    times = [load(page, server.url + path) for _ in range(LOADS)]
                    paints[path] = statistics.median(t[0] for t in times)
                    plots[path] = statistics.median(t[1] for t in times)
                    print(f"{path}: first paint median {paints[path]:.0f} ms "
                          f"(of {', '.join(f'{t[0]:.0f}' for t in times)}), plots drawn "
                          f"median {plots[path]:.0f} ms", flush=True)
                browser.close()
        finally:
            server.stop()
    print(f"FIGURE services.page_ms {max(paints.values()):.1f} ms")
    print(f"FIGURE services.page_plots_ms {max(plots.values()):.1f} ms")


if __name__ == "__main__":
    main()
