"""factory.*: one unit through the factory station (musket build, musket flash, musket
provision) against the naive flow on the same virtual device in the same run, next to the
physical limit of its serial links; and eight stations at once against one.

The virtual device's ROM loader runs at 921600 baud after esptool's baud change and its
console at 115200, both paced at 10 bits per byte. The firmware is a stand-in MicroPython
release of a real one's size (1.6 MB app that compresses as code does). Each unit's ROM
loader runs in a process of its own (musket_sim.station.LoaderProcess), as each unit on a
line is a chip of its own; it is started, the unit powered in download mode on its fixture,
before the clock starts.

- factory.station_seconds: build + flash (`musket flash`: the ROM changes to 921600, then
  esptool's flasher stub goes up, then the pieces are written compressed and verified by
  MD5) + boot + provision.
- factory.naive_seconds: `esptool write-flash` of the release .bin at 921600, then one
  `mpremote cp` per application file over the console, then a provisioning script through
  `mpremote run` (the same device-side calls as musket provision, no registry).
- factory.limit_seconds: the bytes that must cross each link x 10 / its baud. Loader link
  at 921600: the flasher stub's code and data (the station uploads it, after the baud
  change) and the station's compressed flash data (zlib level 9, as esptool sends it).
  Console at 115200: the modem's identity report and the files provisioning writes. Not
  counted, though they cross the wire too: SLIP escapes and packet headers, the handshake
  at 115200 before the baud change, acknowledgements and MD5 replies.
- factory.parallel8_speedup: units per second with 8 stations (8 devices flashed and
  provisioned at once, one build) over units per second with one.

The virtual device runs at --speed 20 (virtual seconds per wall second) while provisioning,
so the modem's boot, a wait that is the modem's and not the line's, costs the same small time
in both flows; the links stay paced in wall time.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from musket import build, espimage, flash, fsimage, parttable
from musket.boards import load_board
from musket.firmware import default_cache_dir
from musket.provision import BrokerSettings, ProvisionOptions, provision
from musket.registry import Registry, default_actor
from musket_sim.rom_loader import device_mac
from musket_sim.station import LoaderProcess

BOARD = "esp32-sim7080g"
APP_SIZE = 1600 * 1024  # MicroPython 1.28's ESP32_GENERIC app is about this size
LOADER_BAUD = 921600
CONSOLE_BAUD = 115200
BITS_PER_BYTE = 10
SPEED = 20
PARALLEL = 8
STARTUP_TIMEOUT_S = 30
BROKER = BrokerSettings("mqtt.example.com", tls=False)  # plain: the bench times provisioning
BIN = Path(sys.executable).parent


class Unit:
    """One virtual device: its flash image, a ROM loader for it, a console when running."""

    def __init__(self, folder: Path, n: int) -> None:
        self.board = load_board(BOARD)
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.image = folder / "flash.bin"
        self.mac = device_mac(bytes([0, 0x20, n]))
        self.proc: subprocess.Popen | None = None

    def erase(self) -> None:
        self.image.write_bytes(b"\xff" * self.board.flash_size)

    def loader(self) -> LoaderProcess:
        return LoaderProcess(self.image, self.board.chip, self.mac)

    def power_on(self) -> str:
        """Boots what is in flash, console on a pty; returns the pty's path."""
        out = self.folder / "sim-stdout.txt"
        with open(out, "wb") as stdout:
            self.proc = subprocess.Popen(
                [str(BIN / "musket"), "sim", "run", "--console", "--keep-flash", "--for", "2h",
                 "--speed", str(SPEED), "--workdir", str(self.folder), "--board", BOARD,
                 "--json"], stdout=stdout, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            first, newline, _ = out.read_text().partition("\n")
            if newline:
                return first.removeprefix("console: ").strip()
            time.sleep(0.02)
        raise SystemExit("the virtual device did not start")

    def power_off(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
            self.proc = None

    def files(self) -> dict[str, bytes]:
        fs = self.board.filesystem(False)
        return fsimage.read(self.image.read_bytes()[fs.offset:fs.end])


def station(units: list[Unit], firmware: Path, out: Path, registry: Registry) -> dict:
    """Build once, flash and provision every unit at once; returns timings and bytes."""
    servers = [unit.loader() for unit in units]
    ports = [s.url for s in servers]  # every unit waits in download mode
    start = time.monotonic()
    result = build.build(BOARD, firmware, out)
    built = time.monotonic()
    plan = flash.Plan.load(out)
    try:
        flashed = flash.flash_ports(ports, plan, baud=LOADER_BAUD)
    finally:
        for server in servers:
            server.unplug()
        sessions = [server.pull() for server in servers]
    failed = [r for r in flashed if not r.ok]
    if failed:
        raise SystemExit(f"flash failed: {failed[0].port}: {failed[0].error}")
    if not all(any(s["stub"] and s["baud"] == LOADER_BAUD and s["writes"] for s in unit)
               for unit in sessions):
        raise SystemExit(f"a unit was not flashed through the stub at {LOADER_BAUD} baud")
    after_flash = time.monotonic()
    errors: list[str] = []

    def provision_one(unit: Unit) -> None:
        try:
            port = unit.power_on()
            provision(port, registry, BROKER, default_actor("bench", "bench"),
                      ProvisionOptions(allow_unknown_sim=True, reset=False))
        except Exception as e:  # noqa: BLE001 - reported below, the bench then fails
            errors.append(f"{unit.folder.name}: {e}")
        finally:
            unit.power_off()

    threads = [threading.Thread(target=provision_one, args=(u,)) for u in units]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("provision failed: " + "; ".join(errors))
    end = time.monotonic()
    loader_bytes = sum(plan.wire_size(r) for r in plan.regions(filesystem=True,
                                                               erase_data=False))
    return {"seconds": end - start, "build": built - start, "flash": after_flash - built,
            "provision": end - after_flash, "loader_bytes": loader_bytes,
            "manifest": result.manifest}


NAIVE_PROVISION = """\
from app import diag, factory
diag.modem(False)
factory.stage(%r, %r, None)
factory.commit()
"""


def naive(unit: Unit, firmware: Path, work: Path) -> dict:
    """esptool write of the release .bin, mpremote cp per file, a provisioning script."""
    board = unit.board
    server = unit.loader()
    port = server.url
    start = time.monotonic()
    try:
        subprocess.run([str(BIN / "esptool"), "--port", port, "--baud", str(LOADER_BAUD),
                        "write-flash", hex(espimage.bootloader_offset(board.chip)),
                        str(firmware)], check=True, capture_output=True)
    finally:
        server.pull()
    flashed = time.monotonic()
    fs_files, rom_files = build.application_files(board, default_cache_dir())
    files = {**rom_files, **fs_files}
    staging = work / "files"
    for path, data in files.items():
        (staging / path).parent.mkdir(parents=True, exist_ok=True)
        (staging / path).write_bytes(data)
    port = unit.power_on()
    try:
        mpremote = [str(BIN / "mpremote"), "connect", port]
        folders = sorted({p.rpartition("/")[0] for p in files if "/" in p})
        for folder in folders:
            subprocess.run([*mpremote, "mkdir", ":" + folder], check=True, capture_output=True)
        for path in sorted(files):
            subprocess.run([*mpremote, "cp", str(staging / path), ":" + path], check=True,
                           capture_output=True)
        copied = time.monotonic()
        script = work / "provision.py"
        device_id = "naive-" + unit.mac.hex()
        script.write_text(NAIVE_PROVISION % (BROKER.device_config(device_id), {
            "mqtt_user": device_id, "mqtt_password": secrets.token_urlsafe(24)}))
        run = subprocess.run([*mpremote, "run", str(script)], capture_output=True, text=True,
                             check=True)
        if '"ok": true' not in run.stdout:
            raise SystemExit(f"naive provisioning failed: {run.stdout[-300:]}")
    finally:
        unit.power_off()
    end = time.monotonic()
    return {"seconds": end - start, "flash": flashed - start, "copy": copied - flashed,
            "provision": end - copied, "files": len(files),
            "file_bytes": sum(len(d) for d in files.values())}


def console_bytes(unit: Unit) -> int:
    """What provisioning must move over the console: the modem's identity report out, the
    unit's new files in."""
    held = unit.files()
    identity = json.dumps({"identity": {"iccid": "8" * 20, "imei": "3" * 15,
                                        "imsi": "2" * 15}})
    return len(identity) + sum(len(held.get(name, b"")) for name in
                               ("config.json", "secrets.json"))


def stub_bytes(chip: str) -> int:
    """The flasher stub esptool uploads to this chip: its code and its data."""
    from esptool.loader import StubFlasher
    from esptool.targets import CHIP_DEFS

    stub = StubFlasher(CHIP_DEFS[chip])
    return len(stub.text) + len(stub.data or b"")


def main() -> None:
    board = load_board(BOARD)
    with tempfile.TemporaryDirectory(prefix="musket-bench-factory-") as tmp_name:
        tmp = Path(tmp_name)
        firmware = tmp / "micropython.bin"
        firmware.write_bytes(espimage.stand_in_release(
            board.chip, parttable.encode(board.partitions(False)), APP_SIZE))
        build.build(BOARD, firmware, tmp / "warm")  # compiles once: the cache is the line's
        registry = Registry.open(tmp / "registry.sqlite", migrate=True)

        unit = Unit(tmp / "unit", 1)
        unit.erase()
        one = station([unit], firmware, tmp / "out-1", registry)
        limit = ((stub_bytes(board.chip) + one["loader_bytes"]) * BITS_PER_BYTE / LOADER_BAUD
                 + console_bytes(unit) * BITS_PER_BYTE / CONSOLE_BAUD)
        unit.erase()
        slow = naive(unit, firmware, tmp / "naive")

        units = [Unit(tmp / f"unit-{n}", 10 + n) for n in range(PARALLEL)]
        for u in units:
            u.erase()
        eight = station(units, firmware, tmp / "out-8", registry)

    print(f"station: build {one['build']:.2f} s, flash {one['flash']:.2f} s "
          f"({one['loader_bytes']:,} bytes on the loader link), provision "
          f"{one['provision']:.2f} s")
    print(f"naive: esptool {slow['flash']:.2f} s, mpremote cp of {slow['files']} files "
          f"({slow['file_bytes']:,} bytes) {slow['copy']:.2f} s, provisioning script "
          f"{slow['provision']:.2f} s")
    print(f"{PARALLEL} stations: {eight['seconds']:.2f} s (flash {eight['flash']:.2f} s, "
          f"provision {eight['provision']:.2f} s)")
    print(f"station {one['seconds']:.2f} s is {slow['seconds'] / one['seconds']:.2f}x faster "
          f"than naive and {one['seconds'] / limit:.2f}x the physical limit")
    print(f"FIGURE factory.station_seconds {one['seconds']:.2f} s")
    print(f"FIGURE factory.naive_seconds {slow['seconds']:.2f} s")
    print(f"FIGURE factory.limit_seconds {limit:.2f} s")
    speedup = (PARALLEL / eight["seconds"]) / (1 / one["seconds"])
    print(f"FIGURE factory.parallel8_speedup {speedup:.2f} x")


if __name__ == "__main__":
    main()
