"""The virtual chip's ROM loader against real esptool (command line and Python API), the boot
from what esptool wrote, and a cable pulled mid-flash."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import time
import zlib

import pytest

from musket_sim import VirtualDevice
from musket_sim.esp_formats import stand_in_image
from musket_sim.rom_loader import (
    CHECKSUM_SEED,
    ESP32,
    FLASH_BEGIN,
    FLASH_DATA,
    FLASH_DEFL_BEGIN,
    FLASH_DEFL_DATA,
    FlashFile,
    LoaderSession,
    SlipReader,
    slip_encode,
)

BOARD = "esp32-sim7080g"
ESPTOOL = [sys.executable, "-m", "esptool", "--chip", "esp32"]


@pytest.fixture
def device(tmp_path):
    dev = VirtualDevice(BOARD, tmp_path / "dev", interpreter="cpython", seed=0x0A0B0C)
    dev.erase_flash()
    yield dev
    dev.close()


def esptool(port, *args, timeout=60):
    return subprocess.run([*ESPTOOL, "--port", port, "--before", "no-reset", *args],
                          capture_output=True, text=True, timeout=timeout)


def flash_bytes(dev, offset, length):
    with open(dev.image, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_esptool_identifies_the_chip_and_its_mac(device):
    port = device.serve_loader()
    assert port.startswith("socket://127.0.0.1:")
    result = esptool(port, "--no-stub", "--after", "no-reset", "chip-id")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Chip type:          ESP32-D0WD-V3 (revision v3.1)" in result.stdout
    assert "Crystal frequency:  40MHz" in result.stdout
    assert "MAC:                24:0a:c4:0a:0b:0c" in result.stdout
    other = VirtualDevice(BOARD, device.workdir.parent / "other", seed=5)
    other.erase_flash()
    try:
        mac = esptool(other.serve_loader(), "--after", "no-reset", "read-mac")
    finally:
        other.close()
    assert "MAC:                24:0a:c4:00:00:05" in mac.stdout, mac.stdout + mac.stderr


def test_write_flash_compressed_through_the_stub_at_921600(device, tmp_path):
    data = os.urandom(24 * 1024) + bytes(40 * 1024)  # some of it compresses
    (tmp_path / "part.bin").write_bytes(data)
    port = device.serve_loader()
    result = esptool(port, "-b", "921600", "--after", "no-reset", "write-flash", "0x20000",
                     str(tmp_path / "part.bin"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Stub flasher running." in result.stdout
    assert "Hash of data verified." in result.stdout
    assert flash_bytes(device, 0x20000, len(data)) == data
    session = device.loader.sessions[-1]
    assert (session.stub, session.baud, session.md5_checks) == (True, 921600, 1)
    assert flash_bytes(device, 0x20000 + len(data), 16) == b"\xff" * 16  # erased, unwritten
    verify = esptool(port, "--after", "no-reset", "verify-flash", "0x20000",
                     str(tmp_path / "part.bin"))
    assert "Verification successful (digest matched)." in verify.stdout, verify.stdout
    (tmp_path / "other.bin").write_bytes(bytes(len(data)))
    mismatch = esptool(port, "--after", "no-reset", "verify-flash", "0x20000",
                       str(tmp_path / "other.bin"))
    assert mismatch.returncode != 0


def test_write_flash_uncompressed_through_the_rom_is_paced_at_115200(device, tmp_path):
    data = os.urandom(12 * 1024)
    (tmp_path / "raw.bin").write_bytes(data)
    start = time.monotonic()
    result = esptool(device.serve_loader(), "--no-stub", "--after", "no-reset",
                     "write-flash", "-u", "0x30000", str(tmp_path / "raw.bin"))
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stdout + result.stderr
    assert flash_bytes(device, 0x30000, len(data)) == data
    session = device.loader.sessions[-1]
    assert (session.stub, session.baud, session.writes) == (False, 115200, [(0x30000, len(data))])
    # 10 bits per byte at 115200: the data alone cannot cross the line any faster.
    assert elapsed >= len(data) * 10 / 115200


def test_esptool_over_a_pty(device, tmp_path):
    data = os.urandom(8 * 1024)
    (tmp_path / "p.bin").write_bytes(data)
    path = device.serve_loader(use_pty=True)
    assert path.startswith("/dev/pts/")
    result = esptool(path, "-b", "460800", "--after", "no-reset", "write-flash", "0x40000",
                     str(tmp_path / "p.bin"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MAC:                24:0a:c4:0a:0b:0c" in result.stdout
    assert flash_bytes(device, 0x40000, len(data)) == data


def test_esptool_python_api(device):
    from esptool.cmds import attach_flash, detect_chip, run_stub, write_flash

    port = device.serve_loader()
    data = bytes(range(256)) * 64
    with detect_chip(port, connect_mode="no-reset") as esp:
        assert esp.CHIP_NAME == "ESP32"
        assert esp.read_mac() == (0x24, 0x0A, 0xC4, 0x0A, 0x0B, 0x0C)
        esp = run_stub(esp)
        esp.change_baud(921600)
        attach_flash(esp)
        write_flash(esp, [(0x50000, data)], compress=True)
        assert esp.flash_md5sum(0x50000, len(data)) == hashlib.md5(data).hexdigest()
    assert flash_bytes(device, 0x50000, len(data)) == data
    assert device.loader.sessions[-1].baud == 921600


def _app_flash(tmp_path, version):
    """A whole flash image as `musket build` lays it out (bootloader, partition table, app,
    romfs, filesystem with the firmware), with a stand-in app of a version of our own."""
    source = VirtualDevice(BOARD, tmp_path / "build", interpreter="cpython")
    source.create_flash()
    image = bytearray(source.image.read_bytes())
    app = stand_in_image("esp32", "musket-app", version, payload_size=32 * 1024)
    image[0x10000:0x10000 + len(app)] = app
    path = tmp_path / "merged.bin"
    path.write_bytes(bytes(image))
    return path


def test_the_device_boots_what_esptool_wrote(device, tmp_path):
    merged = _app_flash(tmp_path, "v9.8.7")
    result = esptool(device.serve_loader(), "-b", "921600", "write-flash", "0x0", str(merged))
    assert result.returncode == 0, result.stdout + result.stderr
    device.loader.pull()
    device.loader = None
    run = device.run(30)
    assert run.errors == [] and run.exit_reason == "span_end"
    log = device.console_log.read_text()
    assert "Loaded app from partition at offset 0x10000" in log
    assert "Project name:     musket-app" in log and "App version:      v9.8.7" in log
    assert "I boot: boot #1, reset cause power-on" in log  # the firmware from the flashed vfs
    assert device.last_boot.app == "factory"


def test_a_broken_app_image_does_not_boot(device, tmp_path):
    merged = bytearray(_app_flash(tmp_path, "v1").read_bytes())
    merged[0x10000 + 0x200] ^= 0x01  # one bit flipped inside the app's code
    (tmp_path / "broken.bin").write_bytes(bytes(merged))
    result = esptool(device.serve_loader(), "-b", "921600", "--after", "no-reset",
                     "write-flash", "0x0", str(tmp_path / "broken.bin"))
    assert result.returncode == 0, result.stdout + result.stderr
    device.loader.pull()
    device.loader = None
    run = device.run(30)
    assert run.exit_reason == "not_bootable"
    assert "checksum failed" in run.errors[0]
    log = device.console_log.read_text()
    assert "E (64) boot: Factory app partition is not bootable" in log
    assert "I boot: boot #1" not in log


def test_a_blank_device_reports_invalid_header(device):
    run = device.run(10)
    assert run.exit_reason == "not_bootable"
    assert "invalid header: 0xffffffff" in device.console_log.read_text()


def test_pulling_the_cable_mid_flash_fails_esptool_clearly(device, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(200 * 1024))  # about 18 s at 115200 baud
    port = device.serve_loader()
    proc = subprocess.Popen([*ESPTOOL, "--port", port, "--before", "no-reset", "--no-stub",
                             "write-flash", "0x10000", str(big)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (device.loader and device.loader.busy
                                               and _written(device) > 8 * 1024):
        time.sleep(0.1)
    device.stop()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0, out
    assert "A fatal error occurred" in out or "error" in out.lower(), out
    run = device.run(10)
    assert run.exit_reason == "not_bootable"


def _written(device) -> int:
    with open(device.image, "rb") as f:
        f.seek(0x10000)
        return len(f.read(256 * 1024).rstrip(b"\xff"))


class _FakeLink:
    def __init__(self) -> None:
        self.sent = bytearray()
        self.baud = 115200

    def write(self, data: bytes) -> None:
        self.sent += data


def _request(command: int, data: bytes, checksum: int = 0) -> bytes:
    return struct.pack("<BBHI", 0, command, len(data), checksum) + data


def _data_packet(command: int, block: bytes, seq: int = 0, checksum: int | None = None):
    if checksum is None:
        checksum = CHECKSUM_SEED
        for byte in block:
            checksum ^= byte
    return _request(command, struct.pack("<IIII", len(block), seq, 0, 0) + block, checksum)


def _replies(link):
    return [struct.unpack_from("<BBHI", frame) + (frame[8:],)
            for frame in SlipReader().feed(bytes(link.sent))]


def test_bad_data_is_refused_and_never_written(tmp_path):
    image = tmp_path / "flash.bin"
    image.write_bytes(b"\xff" * (4 << 20))
    flash = FlashFile(image, 4 << 20)
    link = _FakeLink()
    session = LoaderSession(ESP32, flash, b"\x24\x0a\xc4\x00\x00\x01", link)
    session.handle(_request(FLASH_BEGIN, struct.pack("<IIII", 0x1000, 1, 0x400, 0x9000)))
    session.handle(_data_packet(FLASH_DATA, b"\x00" * 0x400, checksum=0x12))
    session.handle(_request(FLASH_DEFL_BEGIN, struct.pack("<IIII", 0x1000, 1, 0x400, 0xA000)))
    session.handle(_data_packet(FLASH_DEFL_DATA, b"not a deflate stream"))
    session.handle(_request(FLASH_BEGIN, struct.pack("<IIII", 0x1000, 1, 0x400, 0x3FF000 + 1)))
    good = zlib.compress(b"\x42" * 100)
    session.handle(_request(FLASH_DEFL_BEGIN, struct.pack("<IIII", 100, 1, 0x400, 0xB000)))
    session.handle(_data_packet(FLASH_DEFL_DATA, good))
    statuses = [(reply[1], reply[4][:2]) for reply in _replies(link)]
    assert statuses == [
        (FLASH_BEGIN, b"\x00\x00"), (FLASH_DATA, b"\x01\x07"),  # invalid CRC
        (FLASH_DEFL_BEGIN, b"\x00\x00"), (FLASH_DEFL_DATA, b"\x01\x0b"),  # deflate error
        (FLASH_BEGIN, b"\x01\x08"),  # past the end of flash
        (FLASH_DEFL_BEGIN, b"\x00\x00"), (FLASH_DEFL_DATA, b"\x00\x00"),
    ]
    flash.close()
    content = image.read_bytes()
    assert content[0x9000:0xB000] == b"\xff" * 0x2000
    assert content[0xB000:0xB000 + 101] == b"\x42" * 100 + b"\xff"
    assert len(session.log.errors) == 3 and slip_encode(b"\xc0\xdb") == b"\xc0\xdb\xdc\xdb\xdd\xc0"
