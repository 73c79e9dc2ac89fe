"""`musket flash` against virtual devices: real esptool (its Python API, stub and all) talks
to the simulator's ROM loader over socket:// URLs, several devices at once. What lands in each
device's flash image is read back, and a flashed device boots the application."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from musket import esplog, flash, fsimage
from musket.errors import ExitCode
from musket_sim import VirtualDevice, bootrom

BOARD = "esp32-sim7080g"
# Big enough that a transfer is still running when the test pulls a cable.
SLOW_APP = 384 * 1024


def _check_written(image: Path, plan: flash.Plan, names: list[str]) -> None:
    data = image.read_bytes()
    for piece in plan.pieces:
        if piece.name in names:
            assert data[piece.offset:piece.offset + len(piece.data)] == piece.data, piece.name


def test_four_devices_at_once_four_bars_and_a_summary(station, make_build):
    plan_dir = make_build().out_dir
    servers = [station.add() for _ in range(4)]
    env = dict(os.environ, COLUMNS="160", TERM="dumb")
    shown = subprocess.run(
        [sys.executable, "-m", "musket.cli", "flash", str(plan_dir),
         *[arg for s in servers for arg in ("--port", s.url)]],
        capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    for n, server in enumerate(servers, start=1):
        bars = [ln for ln in lines if ln.startswith(server.url) and "done" in ln]
        assert len(bars) == 1, shown.stdout  # one bar per port, finished
        rows = [ln for ln in lines if server.url in ln and "24:0a:c4:00:10:%02x" % n in ln]
        assert rows and " ok " in rows[0], shown.stdout
    plan = flash.Plan.load(plan_dir)
    for server in servers:
        _check_written(server.image, plan, [p.name for p in plan.pieces])
        assert bootrom.boot(server.image.read_bytes(), "esp32", 1).bootable
        assert (plan_dir / "logs").is_dir()


def test_pulling_one_cable_mid_flash_fails_that_port_only(station, make_build, stand_in):
    plan = flash.Plan.load(make_build(micropython=stand_in(app_size=SLOW_APP)).out_dir)
    servers = [station.add() for _ in range(4)]
    victim = servers[1]
    pulled = threading.Event()

    def on_progress(port, done, total, stage):
        if port == victim.url and stage == "writing" and done > 0 and not pulled.is_set():
            pulled.set()
            threading.Thread(target=victim.pull).start()

    results = flash.flash_ports([s.url for s in servers], plan, on_progress=on_progress)
    assert pulled.is_set()
    by_port = {r.port: r for r in results}
    assert not by_port[victim.url].ok
    assert by_port[victim.url].error
    assert by_port[victim.url].mac == "24:0a:c4:00:10:02"  # it got that far
    assert by_port[victim.url].exit_code == ExitCode.UNIT_SILENT  # worth a retry
    for server in servers:
        if server is not victim:
            assert by_port[server.url].ok, by_port[server.url].error
            _check_written(server.image, plan, [p.name for p in plan.pieces])
    log = Path(by_port[victim.url].log).read_text()
    assert "failed:" in log


def test_a_reflash_keeps_the_units_data_unless_asked(station, make_build):
    plan = flash.Plan.load(make_build().out_dir)
    board = station.board
    server = station.add()
    first = flash.flash_port(server.url, plan)
    assert first.ok and first.filesystem == "written (was blank)"

    # The unit lives: its filesystem gains a counter file, NVS gets written.
    fs, nvs = board.filesystem(False), board.partition("nvs", False)
    image = bytearray(server.image.read_bytes())
    files = fsimage.read(bytes(image[fs.offset:fs.end]))
    files["counters.json"] = b"brews=1234"
    image[fs.offset:fs.end] = fsimage.build(files, fs.size)
    image[nvs.offset:nvs.offset + 16] = b"nvs-data-of-unit"
    server.image.write_bytes(image)

    again = flash.flash_port(server.url, plan)
    assert again.ok and again.filesystem == "kept"
    image = server.image.read_bytes()
    assert fsimage.read(image[fs.offset:fs.end])["counters.json"] == b"brews=1234"
    assert image[nvs.offset:nvs.offset + 16] == b"nvs-data-of-unit"

    erased = flash.flash_port(server.url, plan, erase_data=True)
    assert erased.ok and erased.filesystem == "erased and written"
    image = server.image.read_bytes()
    assert "counters.json" not in fsimage.read(image[fs.offset:fs.end])
    assert image[nvs.offset:nvs.offset + nvs.size] == b"\xff" * nvs.size


def test_the_flashed_device_boots_the_application(tmp_path, make_build, station):
    plan = flash.Plan.load(make_build().out_dir)
    device = VirtualDevice(BOARD, tmp_path / "unit", interpreter="micropython")
    device.image.write_bytes(b"\xff" * device.board.flash_size)
    server = station.add(device.image)
    try:
        result = flash.flash_port(server.url, plan, stub=False)  # the ROM loader alone
    finally:
        station.close()
    assert result.ok, result.error
    run = device.run(120)
    device.close()
    assert run.errors == []
    log = device.console_log.read_text()
    assert "boot #1" in log, log[-2000:]


def test_a_build_for_another_chip_is_refused_at_the_port(station, make_build):
    plan = flash.Plan.load(make_build("esp32s3-bg95").out_dir)
    server = station.add()  # an ESP32
    result = flash.flash_port(server.url, plan)
    assert not result.ok
    assert "build is for esp32s3-bg95" in result.error
    assert result.exit_code == ExitCode.BAD_INPUT and "build for its board" in result.hint
    assert server.image.read_bytes() == b"\xff" * station.board.flash_size


def test_cli_json_and_exit_code_when_a_port_fails(station, make_build):
    plan_dir = make_build().out_dir
    good = station.add()
    shown = subprocess.run(
        [sys.executable, "-m", "musket.cli", "flash", str(plan_dir), "--port", good.url,
         "--port", "socket://127.0.0.1:1", "--json"],
        capture_output=True, text=True, timeout=120)
    assert shown.returncode == ExitCode.UNIT_SILENT, shown.stderr  # the failed port's code
    results = {r["port"]: r for r in json.loads(shown.stdout)}
    assert results[good.url]["ok"] is True
    assert results[good.url]["chip"].startswith("ESP32")
    assert results[good.url]["exit_code"] == 0
    silent = results["socket://127.0.0.1:1"]
    assert silent["ok"] is False
    assert "socket://127.0.0.1:1" in silent["error"]
    assert silent["exit_code"] == ExitCode.UNIT_SILENT and silent["hint"]
    lines = shown.stderr.splitlines()
    assert lines[0].startswith("error: socket://127.0.0.1:1: Could not open")
    assert lines[1] == "hint: " + silent["hint"]
    assert "Traceback" not in shown.stderr


def test_a_damaged_build_folder_is_refused(make_build, tmp_path):
    out = make_build().out_dir
    romfs = out / "romfs.bin"
    romfs.write_bytes(romfs.read_bytes()[:-1] + b"\0")
    with pytest.raises(flash.FlashError, match="romfs.bin does not match the manifest"):
        flash.Plan.load(out)
    with pytest.raises(flash.FlashError, match="not a build folder"):
        flash.Plan.load(tmp_path)


def test_esptool_output_follows_the_thread_that_binds_it():
    from esptool.logger import log

    class Collect:
        def __init__(self):
            self.lines, self.bars = [], []

        def line(self, text):
            self.lines.append(text)

        def progress(self, done, total):
            self.bars.append((done, total))

    sinks = [Collect(), Collect()]

    def talk(n):
        with esplog.bound(sinks[n]):
            for i in range(50):
                log.print(f"port {n} line {i}")
                log.progress_bar(i, 50)

    threads = [threading.Thread(target=talk, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, sink in enumerate(sinks):
        assert sink.lines == [f"port {n} line {i}" for i in range(50)]
        assert sink.bars == [(i, 50) for i in range(50)]
