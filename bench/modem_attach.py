"""modem.attach_seconds.<family>: virtual seconds from power-on to an open TCP socket, for each
modem family on its board, through the modem model's default (good) network, with a real
server on loopback at the other end of the socket.

modem.heap_bytes: the heap the modem layer holds once connected under MicroPython (its modules,
which run from ROMFS, AT channel, driver, connection manager and their buffers; largest over
the three families), measured as the firmware's heap in use after a collection, minus what it
used before the layer was imported."""

from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path

from musket_sim import VirtualDevice
from musket_sim.scenario import load_scenario

BOARDS = {"sim7080": "esp32-sim7080g", "sim7600": "esp32-a7670", "bg95": "esp32s3-bg95"}

SCRIPT = """
import asyncio, gc, time
from app import board as board_mod, log as log_mod

async def main():
    log = log_mod.Log(echo=False)
    board = board_mod.load()
    gc.collect()
    before = gc.mem_alloc()
    from app.modem import open_modem
    from app.modem.manager import ConnectionManager
    t0 = time.ticks_ms()
    mgr = ConnectionManager(open_modem(board, log), log)
    asyncio.create_task(mgr.run())
    sock = await mgr.open_socket("127.0.0.1", {port}, 600000)
    print("ATTACH_MS", time.ticks_diff(time.ticks_ms(), t0))
    await sock.write(b"ping")
    buf = bytearray(8)
    await sock.read_into(buf)
    gc.collect()
    print("HEAP", gc.mem_alloc() - before)
    await sock.close()

asyncio.run(main())
"""


def _server() -> int:
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def _figure(output: str, key: str) -> int:
    for line in output.splitlines():
        if line.startswith(key + " "):
            return int(line.split()[1])
    raise SystemExit(f"no {key} in the device's output:\n{output}")


def main() -> None:
    port = _server()
    heap = 0
    with tempfile.TemporaryDirectory() as tmp:
        for family, board in BOARDS.items():
            device = VirtualDevice(board, Path(tmp, family), modem=load_scenario("good"))
            device.create_flash()
            result = device.run(3600, script=SCRIPT.format(port=port))
            if result.errors:
                raise SystemExit(f"{family}: {result.errors}")
            attach_s = _figure(result.script_output, "ATTACH_MS") / 1000
            heap = max(heap, _figure(result.script_output, "HEAP"))
            print(f"{family} on {board}: socket open {attach_s:.1f} virtual s after power-on")
            print(f"FIGURE modem.attach_seconds.{family} {attach_s:.2f} virtual_s")
    print(f"FIGURE modem.heap_bytes {heap} bytes")


if __name__ == "__main__":
    main()
