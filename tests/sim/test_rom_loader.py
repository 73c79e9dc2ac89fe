"""The virtual chip's ROM loader against real esptool (command line and Python API), the boot
from what esptool wrote, and a cable pulled mid-flash. What differs between chips (detection,
eFuses, the stub's load address, where the bootloader sits) runs for the ESP32 and the
ESP32-S3; what does not (pacing, the pty, a pulled cable) for the ESP32 alone."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass

import pytest

from musket_sim import VirtualDevice, bootrom
from musket_sim.esp_formats import BOOTLOADER_OFFSETS, stand_in_image
from musket_sim.rom_chips import CHIPS, ESP32
from musket_sim.rom_flash import FlashFile
from musket_sim.rom_protocol import (
    CHECKSUM_SEED,
    FLASH_BEGIN,
    FLASH_DATA,
    FLASH_DEFL_BEGIN,
    FLASH_DEFL_DATA,
    GET_SECURITY_INFO,
    MEM_BEGIN,
    MEM_DATA,
    MEM_END,
    OHAI,
    SlipReader,
    slip_encode,
)
from musket_sim.rom_session import LoaderSession


@dataclass(frozen=True)
class Target:
    """A board of each chip, and what esptool and the chip's ROM say about it."""

    board: str
    chip: str
    chip_name: str  # esptool's "Detecting chip type..." answer
    chip_type: str  # esptool's "Chip type:" line
    flash_mb: int
    rom_reset_line: str  # the ROM's first words about a power-on boot


TARGETS = {
    "esp32": Target("esp32-sim7080g", "esp32", "ESP32", "ESP32-D0WD-V3 (revision v3.1)", 4,
                    "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)"),
    "esp32s3": Target("esp32s3-bg95", "esp32s3", "ESP32-S3", "ESP32-S3 (QFN56) (revision v0.2)",
                      8, "rst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)"),
}
BOARD = TARGETS["esp32"].board
ESPTOOL = [sys.executable, "-m", "esptool"]
# The tests that take `device` this way run once per chip; the others on the ESP32.
both_chips = pytest.mark.parametrize("device", list(TARGETS), indirect=True)


@pytest.fixture
def device(request, tmp_path):
    target = TARGETS[getattr(request, "param", "esp32")]
    dev = VirtualDevice(target.board, tmp_path / "dev", interpreter="cpython", seed=0x0A0B0C)
    dev.erase_flash()
    dev.target = target
    yield dev
    dev.close()


def esptool(port, *args, chip="esp32", timeout=60):
    return subprocess.run([*ESPTOOL, "--chip", chip, "--port", port, "--before", "no-reset",
                           *args],
                          capture_output=True, text=True, timeout=timeout)


def flash_bytes(dev, offset, length):
    with open(dev.image, "rb") as f:
        f.seek(offset)
        return f.read(length)


@both_chips
def test_esptool_detects_the_chip_and_its_mac(device):
    target = device.target
    port = device.serve_loader()
    assert port.startswith("socket://127.0.0.1:")
    result = esptool(port, "--no-stub", "--after", "no-reset", "chip-id", chip="auto")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Detecting chip type... {target.chip_name}\n" in result.stdout
    assert f"Chip type:          {target.chip_type}" in result.stdout
    assert "Crystal frequency:  40MHz" in result.stdout
    assert "MAC:                24:0a:c4:0a:0b:0c" in result.stdout
    # esptool tells an S3 by GET_SECURITY_INFO's chip id; the ESP32's ROM refuses the command.
    security_refused = "GET_SECURITY_INFO" in " ".join(device.loader.sessions[-1].errors)
    assert security_refused == (target.chip == "esp32")
    other = VirtualDevice(target.board, device.workdir.parent / "other", seed=5)
    other.erase_flash()
    try:
        mac = esptool(other.serve_loader(), "--after", "no-reset", "read-mac", chip="auto")
    finally:
        other.close()
    assert "MAC:                24:0a:c4:00:00:05" in mac.stdout, mac.stdout + mac.stderr
    assert f"Detecting chip type... {target.chip_name}\n" in mac.stdout
    assert "Stub flasher running." in mac.stdout  # the stub for this chip ran and said OHAI


@both_chips
def test_esptool_tells_a_wrong_chip_argument(device):
    other = TARGETS["esp32" if device.target.chip == "esp32s3" else "esp32s3"]
    result = esptool(device.serve_loader(), "--no-stub", "--after", "no-reset", "read-mac",
                     chip=other.chip)
    assert result.returncode != 0
    assert (f"This chip is {device.target.chip_name}, not {other.chip_name}."
            in result.stdout + result.stderr), result.stdout + result.stderr


@both_chips
def test_write_flash_compressed_through_the_stub_at_921600(device, tmp_path):
    chip = device.target.chip
    data = os.urandom(24 * 1024) + bytes(40 * 1024)  # some of it compresses
    (tmp_path / "part.bin").write_bytes(data)
    port = device.serve_loader()
    result = esptool(port, "-b", "921600", "--after", "no-reset", "write-flash", "0x20000",
                     str(tmp_path / "part.bin"), chip=chip)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Stub flasher running." in result.stdout
    assert "Hash of data verified." in result.stdout
    assert flash_bytes(device, 0x20000, len(data)) == data
    session = device.loader.sessions[-1]
    assert (session.stub, session.baud, session.md5_checks) == (True, 921600, 1)
    assert flash_bytes(device, 0x20000 + len(data), 16) == b"\xff" * 16  # erased, unwritten
    verify = esptool(port, "--after", "no-reset", "verify-flash", "0x20000",
                     str(tmp_path / "part.bin"), chip=chip)
    assert "Verification successful (digest matched)." in verify.stdout, verify.stdout
    (tmp_path / "other.bin").write_bytes(bytes(len(data)))
    mismatch = esptool(port, "--after", "no-reset", "verify-flash", "0x20000",
                       str(tmp_path / "other.bin"), chip=chip)
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


@both_chips
def test_esptool_python_api(device):
    from esptool.cmds import attach_flash, detect_chip, detect_flash_size, run_stub, write_flash

    port = device.serve_loader()
    data = bytes(range(256)) * 64
    with detect_chip(port, connect_mode="no-reset") as esp:
        assert esp.CHIP_NAME == device.target.chip_name
        assert esp.read_mac() == (0x24, 0x0A, 0xC4, 0x0A, 0x0B, 0x0C)
        esp = run_stub(esp)
        esp.change_baud(921600)
        attach_flash(esp)
        assert detect_flash_size(esp) == f"{device.target.flash_mb}MB"
        write_flash(esp, [(0x50000, data)], compress=True)
        assert esp.flash_md5sum(0x50000, len(data)) == hashlib.md5(data).hexdigest()
    assert flash_bytes(device, 0x50000, len(data)) == data
    assert device.loader.sessions[-1].baud == 921600


def _app_flash(tmp_path, version, board=BOARD):
    """A whole flash image as `musket build` lays it out (bootloader, partition table, app,
    romfs, filesystem with the firmware), with a stand-in app of a version of our own."""
    source = VirtualDevice(board, tmp_path / "build", interpreter="cpython")
    source.create_flash()
    image = bytearray(source.image.read_bytes())
    app = stand_in_image(source.board.chip, "musket-app", version, payload_size=32 * 1024)
    image[0x10000:0x10000 + len(app)] = app
    path = tmp_path / "merged.bin"
    path.write_bytes(bytes(image))
    return path


@both_chips
def test_the_device_boots_what_esptool_wrote(device, tmp_path):
    target = device.target
    merged = _app_flash(tmp_path, "v9.8.7", target.board)
    result = esptool(device.serve_loader(), "-b", "921600", "write-flash", "0x0", str(merged),
                     chip=target.chip)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Wrote {target.flash_mb << 20} bytes" in result.stdout
    device.loader.pull()
    device.loader = None
    run = device.run(30)
    assert run.errors == [] and run.exit_reason == "span_end"
    log = device.console_log.read_text()
    assert target.rom_reset_line in log
    assert f"board {target.board}" in log
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
    proc = subprocess.Popen([*ESPTOOL, "--chip", "esp32", "--port", port, "--before",
                             "no-reset", "--no-stub",
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


def _session(chip, tmp_path):
    image = tmp_path / "flash.bin"
    image.write_bytes(b"\xff" * (4 << 20))
    link = _FakeLink()
    return LoaderSession(CHIPS[chip], FlashFile(image, 4 << 20), b"\x24\x0a\xc4\x00\x00\x01",
                         link), link


@pytest.mark.parametrize("chip", list(TARGETS))
def test_get_security_info_carries_the_chip_id_only_where_the_rom_has_it(chip, tmp_path):
    session, link = _session(chip, tmp_path)
    session.handle(_request(GET_SECURITY_INFO, b""))
    (_, command, _, _, body), = _replies(link)
    assert command == GET_SECURITY_INFO
    if chip == "esp32":
        assert body == b"\x01\x05\x00\x00"  # failed: message invalid (unknown command)
    else:
        flags, crypt_cnt, *purposes, chip_id, eco = struct.unpack("<IB7BII", body[:20])
        assert (flags, crypt_cnt, purposes, chip_id, eco) == (0, 0, [0] * 7, 9, 0)
        assert body[20:] == b"\x00\x00\x00\x00"  # the ROM's four status bytes: success
    session.flash.close()


# Where esptool's flasher stub for each chip starts (its MEM_END entry point).
_STUB_ENTRIES = {"esp32": 0x400A902C, "esp32s3": 0x403795A8}


@pytest.mark.parametrize("chip,built_for", [("esp32", "esp32"), ("esp32", "esp32s3"),
                                            ("esp32s3", "esp32s3"), ("esp32s3", "esp32")])
def test_the_stub_runs_only_on_the_chip_it_was_built_for(chip, built_for, tmp_path):
    session, link = _session(chip, tmp_path)
    entry = _STUB_ENTRIES[built_for]
    code = b"\x00" * 64
    session.handle(_request(MEM_BEGIN, struct.pack("<IIII", len(code), 1, 0x800, entry & ~0xFFF)))
    session.handle(_data_packet(MEM_DATA, code))
    session.handle(_request(MEM_END, struct.pack("<II", 0, entry)))
    runs = chip == built_for
    assert session.stub is runs
    assert (slip_encode(OHAI) in bytes(link.sent)) is runs
    assert bool(session.log.errors) is not runs  # the crash is logged
    session.flash.close()


@pytest.mark.parametrize("chip", list(TARGETS))
def test_the_rom_looks_for_the_bootloader_at_its_own_offset(chip, tmp_path):
    board = TARGETS[chip].board
    dev = VirtualDevice(board, tmp_path / "dev", interpreter="cpython")
    dev.create_flash(with_firmware=False)
    flash = bytearray(dev.image.read_bytes())
    dev.close()
    assert bootrom.boot(bytes(flash), chip, 1).bootable
    # The same bootloader where the other chip's ROM would look for it: nothing boots.
    here, there = BOOTLOADER_OFFSETS[chip], BOOTLOADER_OFFSETS["esp32s3" if chip == "esp32"
                                                                 else "esp32"]
    boot = bytes(flash[here:here + 0x1000 - 16])
    flash[here:here + len(boot)] = b"\xff" * len(boot)
    flash[there:there + len(boot)] = boot
    outcome = bootrom.boot(bytes(flash), chip, 1)
    assert not outcome.bootable
    assert f"no valid bootloader at {here:#x}" in outcome.error


def test_the_stub_acknowledges_a_block_before_it_writes_it(tmp_path):
    from musket_sim.rom_protocol import FLASH_DEFL_END, READ_REG

    session, link = _session("esp32", tmp_path)
    entry = _STUB_ENTRIES["esp32"]
    session.handle(_request(MEM_BEGIN, struct.pack("<IIII", 64, 1, 0x800, entry & ~0xFFF)))
    session.handle(_data_packet(MEM_DATA, b"\x00" * 64))
    session.handle(_request(MEM_END, struct.pack("<II", 0, entry)))
    link.sent.clear()
    good = zlib.compress(b"\x42" * 100)
    session.handle(_request(FLASH_DEFL_BEGIN, struct.pack("<IIIII", 100, 1, 0x4000, 0xB000, 0)))
    session.handle(_data_packet(FLASH_DEFL_DATA, good))
    assert flash_at(session, 0xB000, 100) == b"\xff" * 100  # answered, not yet written
    session.handle(_request(READ_REG, struct.pack("<I", 0x40001000)))  # esptool's last word
    assert flash_at(session, 0xB000, 100) == b"\x42" * 100
    # A broken stream is acknowledged too; its failure comes with the next answers.
    session.handle(_request(FLASH_DEFL_BEGIN, struct.pack("<IIIII", 0x8000, 2, 0x4000, 0xA000,
                                                          0)))
    session.handle(_data_packet(FLASH_DEFL_DATA, b"not a deflate stream"))
    session.handle(_data_packet(FLASH_DEFL_DATA, good, seq=1))
    session.handle(_request(FLASH_DEFL_END, struct.pack("<I", 1)))
    statuses = [(reply[1], reply[4][-2:]) for reply in _replies(link)]
    assert statuses == [
        (FLASH_DEFL_BEGIN, b"\x00\x00"), (FLASH_DEFL_DATA, b"\x00\x00"), (READ_REG, b"\x00\x00"),
        (FLASH_DEFL_BEGIN, b"\x00\x00"), (FLASH_DEFL_DATA, b"\x00\x00"),
        (FLASH_DEFL_DATA, b"\x01\xc7"), (FLASH_DEFL_END, b"\x01\xc7"),  # inflate error
    ]
    assert flash_at(session, 0xA000, 0x1000) == b"\xff" * 0x1000
    assert len(session.log.errors) == 1
    session.flash.close()


def flash_at(session, offset, length):
    return session.flash.read(offset, length)


@pytest.mark.parametrize("cut", range(0, 12))
def test_slip_frames_split_anywhere_read_the_same(cut):
    payload = b"\x01\xc0\x02\xdb\x03\xdb\xdc\xc0"
    stream = b"noise" + slip_encode(payload) + slip_encode(b"\x04")
    reader = SlipReader()
    assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == [payload, b"\x04"]


def test_a_loader_in_a_process_of_its_own_serves_esptool(tmp_path):
    from musket_sim.station import LoaderProcess

    image = tmp_path / "flash.bin"
    image.write_bytes(b"\xff" * (4 << 20))
    loader = LoaderProcess(image, "esp32", b"\x24\x0a\xc4\x00\x00\x07")
    try:
        result = esptool(loader.url, "--no-stub", "--after", "no-reset", "read-mac")
    finally:
        sessions = loader.pull()
    assert "24:0a:c4:00:00:07" in result.stdout, result.stdout + result.stderr
    assert [(s["stub"], s["baud"], s["writes"]) for s in sessions] == [(False, 115200, [])]
