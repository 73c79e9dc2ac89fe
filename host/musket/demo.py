"""`musket demo`: the main job end to end, on virtual hardware.

One device's life on the reference board: its firmware packed into a flash image, a simulated
day of a café's coffee machine (brews and dispenses played on the sensors) under the real
MicroPython interpreter with an ESP32-sized heap, the counters read back from flash next to what
the appliance did, then a power cut in the middle of a flash write and the reboot that follows,
with the device's own console output as evidence.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rich.console import Console

from musket import firmware
from musket.boards import load_board
from musket.errors import DeviceReportedErrors

DEMO_BOARD = "esp32-sim7080g"
DAY_S = 86400
CONSOLE_LINES_SHOWN = 4
USAGE = "day"
# Reads the counters back from flash on the device, as a technician's console would.
READ_COUNTERS = """
import json
from app import counter
c = counter.Counters([])
print("COUNTERS " + json.dumps({"totals": c.snapshot(), "events": c.last_seq}))
"""


def _tail(path: Path, n: int) -> list[str]:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-n:]


def _read_counters(device) -> dict:
    """The counters as the device reads them back from its flash."""
    output = device.run(60, script=READ_COUNTERS).script_output
    for line in output.splitlines():
        if line.startswith("COUNTERS "):
            return json.loads(line[len("COUNTERS "):])
    raise DeviceReportedErrors(f"the device did not report its counters: {output.strip()[-300:]}")


def run(workdir: Path | None = None, console: Console | None = None) -> dict:
    """Runs the demo; returns the figures it printed (for tests and scripts)."""
    from musket_sim import VirtualDevice
    from musket_sim.scenario import load_scenario
    from musket_sim.usage_scenario import expected_counts, load_usage

    console = console or Console()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="musket-demo-"))
    board = load_board(DEMO_BOARD)
    console.rule("musket demo")
    console.print(f"board: [bold]{board.name}[/] ({board.chip}, modem {board.modem.family}, "
                  f"{board.flash_size >> 20} MB flash)")
    device = VirtualDevice(board, workdir / "device", interpreter="micropython",
                           modem=load_scenario("good"), usage=load_usage(USAGE))
    device.create_flash()
    files = device.read_files()
    modules = [p for p in firmware.firmware_sources() if p not in firmware.RUN_AS_SOURCE]
    console.print(f"1. flash image built: {len(modules)} firmware modules compiled into the "
                  f"ROMFS partition, {', '.join(sorted(files))} on the littlefs partition: "
                  f"{device.image}")
    day = device.run(DAY_S)
    console.print(f"2. one simulated day of a café's coffee machine ({USAGE!r} usage) under "
                  f"MicroPython with the board's {device.heap // 1024}K heap: "
                  f"{day.virtual_seconds:,.0f} virtual s in {day.wall_seconds:.2f} wall s "
                  f"({day.virtual_seconds / day.wall_seconds:,.0f}x), {day.boots} boot, "
                  f"heap peak {day.heap_peak_bytes:,} bytes, errors: {len(day.errors)}")
    for line in _tail(device.console_log, CONSOLE_LINES_SHOWN):
        console.print(f"   [dim]console>[/] {line}")

    counted = _read_counters(device)
    totals = counted["totals"]
    brews, litres = totals.get("brews", 0), totals.get("litres", 0.0)
    want_brews, want_ml, uncertain = expected_counts(
        device.usage_settings(), device.seed, 0, DAY_S, brew_min_s=10, min_pulses=20)
    console.print(f"   counters on flash: {brews} brews, {litres:.3f} litres in "
                  f"{counted['events']} committed events; the appliance's day had "
                  f"{want_brews} brews" + (f" (+{uncertain} uncertain)" if uncertain else "")
                  + f" and {want_ml / 1000:.3f} litres")

    # The application records each boot through the power-safe store; cutting power at its
    # first flash write tears that update. The next boot must still count correctly.
    cut = device.run(3600, cut_at_write=1)
    reasons = " → ".join(b.reason for b in cut.boot_log)
    console.print(f"3. power cut at the first flash write of the next boot: boots {reasons}; "
                  f"errors: {len(cut.errors)}")
    boot_lines = [ln for ln in device.console_log.read_text().splitlines() if " boot #" in ln]
    console.print("   the boot that lost power never finished recording itself; the one after "
                  "it read the previous count intact from flash:")
    for line in boot_lines[-2:]:
        console.print(f"   [dim]console>[/] {line}")
    console.print(f"work folder (flash image, console log): {workdir}")
    return {
        "day_wall_seconds": day.wall_seconds,
        "day_errors": day.errors,
        "heap_peak_bytes": day.heap_peak_bytes,
        "counted": (brews, litres),
        "expected": (want_brews, want_ml / 1000),
        "cut_reasons": [b.reason for b in cut.boot_log],
        "cut_errors": cut.errors,
        "boot_lines": boot_lines,
    }
