"""Factory fixtures: a MicroPython-release-shaped stand-in firmware per board, builds, and a
station of virtual devices behind their ROM loaders."""

from __future__ import annotations

from pathlib import Path

import pytest

from musket import build, espimage, parttable
from musket.boards import load_board
from musket_sim.rom_loader import LoaderServer, device_mac

SMALL_APP = 64 * 1024
BOARD = "esp32-sim7080g"


def stand_in_firmware(folder: Path, board_name: str, app_size: int = SMALL_APP) -> Path:
    """Writes a stand-in MicroPython release .bin for the board (its own plain table)."""
    board = load_board(board_name)
    path = folder / f"micropython-{board.chip}-{app_size}.bin"
    if not path.exists():
        table = parttable.encode(board.partitions(False))
        path.write_bytes(espimage.stand_in_release(board.chip, table, app_size))
    return path


@pytest.fixture(scope="session")
def firmware_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("micropython")


@pytest.fixture(scope="session")
def mpy_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mpy-cache")


@pytest.fixture
def stand_in(firmware_dir):
    """The stand-in firmware .bin for a board (default: the reference board)."""
    def make(board: str = "esp32-sim7080g", app_size: int = SMALL_APP) -> Path:
        return stand_in_firmware(firmware_dir, board, app_size)

    return make


@pytest.fixture
def make_build(tmp_path, firmware_dir, mpy_cache):
    """build(board, name="out", **options) -> BuildResult, with a stand-in firmware."""

    def make(board: str = "esp32-sim7080g", name: str = "out", **options):
        firmware = options.pop("micropython", None) or stand_in_firmware(firmware_dir, board)
        options.setdefault("cache_dir", mpy_cache)
        return build.build(board, firmware, tmp_path / name, **options)

    return make


class Station:
    """Virtual devices with erased flash, each behind its own ROM loader (socket:// URLs)."""

    def __init__(self, folder: Path, board: str = BOARD) -> None:
        self.folder = folder
        self.board = load_board(board)
        self.servers: list[LoaderServer] = []

    def add(self, image: Path | None = None) -> LoaderServer:
        n = len(self.servers) + 1
        image = image or self.folder / f"device-{n}.bin"
        if not image.exists():
            image.write_bytes(b"\xff" * self.board.flash_size)
        server = LoaderServer(image, self.board.flash_size, self.board.chip,
                              device_mac(bytes([0, 0x10, n])))
        server.image = image
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.pull()


@pytest.fixture
def station(tmp_path):
    made = Station(tmp_path)
    yield made
    made.close()
