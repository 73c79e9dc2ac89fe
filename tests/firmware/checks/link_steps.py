# Steps for the modem link tests (tests/firmware/test_modem_link.py), each run by linkstack.run
# on top of a running connection manager against the modem model's scenario; each prints what
# the test checks as "TAG value" lines.
import asyncio
import json

from linkstack import exchange, ms, now_s, until


async def echo(mgr, driver, port, payload):
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, port, payload))


async def outage_and_recovery(mgr, driver, port):
    await mgr.wait_connected(600000)
    print("UP", now_s())
    seen = []
    while now_s() < 3000:
        state = mgr.status["state"]
        if not seen or seen[-1][1] != state:
            seen.append((now_s(), state))
        await asyncio.sleep(10)
    print("STATES", json.dumps(seen))
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, port, b"back"))


async def connected_at_1800(mgr, driver, port):
    await until(1800)
    print("CONNECTED", mgr.connected.is_set())


async def echo_after_1500(mgr, driver, port):
    await mgr.wait_connected(600000)
    await until(1500)
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, port, b"alive"))


async def data_drop(mgr, driver, port):
    await mgr.wait_connected(600000)
    sock = await mgr.open_socket("127.0.0.1", port)
    await sock.write(b"before")
    buf = bytearray(16)
    print("FIRST", bytes(buf[:await sock.read_into(buf)]))
    while ms() < 599000:
        await asyncio.sleep_ms(500)
    print("BEFORE", mgr.status["state"])
    while mgr.status["state"] == "connected" and ms() < 700000:
        await asyncio.sleep_ms(50)
    print("ACTED_MS", ms() - 600000, mgr.status["state"])
    try:
        await sock.write(b"after")
        print("AFTER_DROP", "written")
    except OSError as e:
        print("AFTER_DROP", "OSError", e.errno)
    await sock.close()
    await until(800)
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, port, b"again"))


async def sim_swap(mgr, driver, port):
    await mgr.wait_connected(600000)
    print("ICCID", mgr.status["identity"]["iccid"])
    await until(3700)
    await driver.power_cycle()
    print("ICCID", (await driver.identity())["iccid"])


async def radio_off(mgr, driver, port):
    await mgr.wait_connected(600000)
    mgr.radio(False)
    await asyncio.sleep(60)
    print("PARKED", mgr.status["state"], mgr.connected.is_set())
    mgr.radio(True)
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, port, b"on air"))


async def send_refused(mgr, driver, port):
    await mgr.wait_connected(600000)
    sock = await mgr.open_socket("127.0.0.1", port)
    while ms() < 601000:
        await asyncio.sleep(1)
    t0 = ms()
    try:
        await sock.write(b"after")
        print("REFUSED", "written")
    except OSError as e:
        print("REFUSED", e.errno, ms() - t0, str(e))
    try:
        await sock.close()
    except OSError as e:
        print("CLOSE", e.errno)
    print("ECHO", await exchange(mgr, port, b"again"))


async def sim7000_detach(mgr, driver, port):
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, port, b"seven thousand"))
    await driver.detach()
    print("DETACHED", mgr.status["bearer"], mgr.status["ip"])


async def closed_on_open(mgr, driver, port):
    await mgr.wait_connected(600000)
    while ms() < 601000:
        await asyncio.sleep(1)
    sock = await mgr.open_socket("127.0.0.1", port)
    await asyncio.sleep_ms(100)
    print("OPENED", sock.closed, await sock.read_into(bytearray(8)))
    try:
        await sock.write(b"x")
    except OSError as e:
        print("WRITE", e.errno)
    await sock.close()
    print("ECHO", await exchange(mgr, port, b"next one"))


async def direct_push(mgr, driver, port):
    await mgr.wait_connected(600000)
    reads = []
    recv = driver.recv

    async def counted(sock, buf):
        reads.append(1)
        return await recv(sock, buf)
    driver.recv = counted
    print("ECHO", await exchange(mgr, port, b"pushed to the device"))
    print("READS", len(reads))


async def modem_restart(mgr, driver, port):
    await mgr.wait_connected(600000)
    while ms() < 599000:
        await asyncio.sleep_ms(500)
    while mgr.status["state"] == "connected" and ms() < 700000:
        await asyncio.sleep_ms(50)
    print("ACTED_MS", ms() - 600000)
    await asyncio.sleep(30)
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, port, b"after the restart"))


async def idle_two_minutes(mgr, driver, port):
    await until(120)
