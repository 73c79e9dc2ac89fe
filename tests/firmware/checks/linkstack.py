# The firmware's modem layer for the modem link tests (tests/firmware/test_modem_link.py):
# the board's driver opened as the firmware opens it, a connection manager running, and the
# helpers the steps (link_steps.py) use. `run` prints the manager's status last, as
# "STATUS <json>".
import asyncio
import json
import time

from app import board as board_mod
from app import log as log_mod
from app.modem import open_modem
from app.modem.manager import ConnectionManager

T0 = time.ticks_ms()


def ms():
    # Milliseconds since boot; the scenario's event times count from there on a fresh device.
    return time.ticks_diff(time.ticks_ms(), T0)


def now_s():
    return ms() // 1000


async def exchange(mgr, port, payload):
    """Sends `payload` to the echo server on `port` and returns what came back."""
    sock = await mgr.open_socket("127.0.0.1", port)
    await sock.write(payload)
    buf = bytearray(64)
    got = b""
    while len(got) < len(payload):
        n = await sock.read_into(buf)
        if n == 0:
            break
        got += bytes(buf[:n])
    await sock.close()
    return got


async def until(seconds):
    while now_s() < seconds:
        await asyncio.sleep(10)


def run(port, step, args=()):
    """Runs `step(mgr, driver, port, *args)` with the connection manager running."""
    async def main():
        log = log_mod.Log(echo=False)
        driver = open_modem(board_mod.load(), log)
        mgr = ConnectionManager(driver, log, apn="")
        asyncio.create_task(mgr.run())
        await step(mgr, driver, port, *args)
        print("STATUS", json.dumps(mgr.status))

    asyncio.run(main())
