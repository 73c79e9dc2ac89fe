"""The rules engine's throughput: counter events evaluated per second against a product of 50
rules (counter thresholds on four counters, consumables, reboots, diagnosis codes, silence,
signal), on a real PostgreSQL (a throwaway server, as the tests start it). The events are the
devices' own encoding, taken by the real fleet store; the figure times only the engine's
passes (reading past its cursors, evaluating, acting on what triggered, moving the cursors).

Figure:
  services.rules_events_per_s  events evaluated per second, over ROUNDS passes of
                               EVENTS_PER_ROUND events from DEVICES devices
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in ("tests/host", "tests/fleet", "tests/services"):
    sys.path.insert(0, str(ROOT / folder))

from fleethelp import ACTOR, bind, iccid  # noqa: E402
from pgserver import PostgresServer  # noqa: E402
from svchelp import T0, Device, import_sites, take  # noqa: E402

from musket.registry import Registry  # noqa: E402
from musket.services import rules  # noqa: E402
from musket.services.engine import RulesEngine  # noqa: E402

DEVICES = 100
ROUNDS = 5
EVENTS_PER_ROUND = 10_000
COUNTERS = ("brews", "litres", "cleans", "steams")
CONSUMABLES = {"beans": "brews", "filter": "litres", "tablets": "cleans", "gasket": "steams"}


def rules_text() -> str:
    lines = ["product: coffee", "consumables:"]
    for name, counter in CONSUMABLES.items():
        lines.append(f"  {name}: {{counter: {counter}, per_use: 0.01, capacity: 5, "
                     "lead_time_days: 2}")
    lines.append("rules:")
    n = 0
    for counter in COUNTERS:
        for every in (25, 50, 75, 100, 150, 200, 300, 400, 500, 1000):
            lines += [f"  - name: r{n}", f"    when: {{counter: {counter}, every: {every}}}",
                      f"    do: [{{sink: {{path: r{n}.jsonl}}}}]"]
            n += 1
    for name in CONSUMABLES:
        lines += [f"  - name: r{n}", f"    when: {{consumable: {name}}}", "    do: [{order: }]"]
        n += 1
    others = ["{reboots: 3, within_hours: 24}", "{diagnosis: MODEM_HUNG}",
              "{sensor_fault: 'SENSOR_*', for_hours: 1}", "{silent_hours: 12}",
              "{signal_below: -110, for_days: 3}", "{diagnosis: any}"]
    for when in others:
        lines += [f"  - name: r{n}", f"    when: {when}", "    do: [{ticket: }]"]
        n += 1
    assert n == 50, n
    return "\n".join(lines) + "\n"


def main() -> None:
    server = PostgresServer()
    server.start()
    work = Path(tempfile.mkdtemp(prefix="musket-bench-services-"))
    try:
        with Registry.open(server.new_database(), migrate=True) as registry:
            sims = work / "sims.csv"
            sims.write_text("ICCID,plan,state\n" + "".join(
                f"{iccid(500 + n)},iot,inventory\n" for n in range(DEVICES)))
            registry.import_sims(sims, ACTOR)
            ids = [f"b-{n:03d}" for n in range(DEVICES)]
            for n, d in enumerate(ids):
                bind(registry, d, iccid(500 + n), n)
            import_sites(registry.engine, work, [(d, f"c{n % 10}", "coffee", f"site {n}")
                                                 for n, d in enumerate(ids)])
            products = {"coffee": rules.parse(rules_text(), "bench.yaml")}
            clock_t = [T0]
            engine = RulesEngine(registry.engine, products,
                                 lambda: datetime.fromtimestamp(clock_t[0], UTC))
            devices = [Device(d) for d in ids]
            per_device = EVENTS_PER_ROUND // DEVICES // len(COUNTERS)
            evaluated, spent, acted = 0, 0.0, 0
            for r in range(ROUNDS):
                t = T0 + r * 3600
                for device in devices:
                    take(registry.engine, *[device.use(c, per_device, t) for c in COUNTERS])
                clock_t[0] = t + 3599
                start = time.perf_counter()
                result = engine.run_once()
                spent += time.perf_counter() - start
                evaluated += result.events
                acted += result.triggers
            print(f"{evaluated:,} events in {ROUNDS} passes, {acted:,} triggers acted, "
                  f"{spent:.2f} s in the engine")
            print(f"FIGURE services.rules_events_per_s {evaluated / spent:.0f} events/s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
