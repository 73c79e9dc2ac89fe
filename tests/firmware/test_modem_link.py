"""The firmware's whole modem layer (AT channel, family driver, connection manager) against the
modem model, under both interpreters: a real TCP exchange with a server on loopback for each
family, and the radio scenarios the field throws at a device."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from musket_sim.scenario import SCENARIOS, load_scenario

BOARDS = {"sim7080": "esp32-sim7080g", "sim7600": "esp32-a7670", "bg95": "esp32s3-bg95"}

STACK = """
import asyncio, json, time
from app import board as board_mod, log as log_mod
from app.modem import open_modem
from app.modem.manager import ConnectionManager

PORT = {port}
T0 = time.ticks_ms()


def now_s():
    # Seconds since boot; the scenario's event times count from there on a fresh device.
    return time.ticks_diff(time.ticks_ms(), T0) // 1000


async def exchange(mgr, payload):
    sock = await mgr.open_socket("127.0.0.1", PORT)
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


async def main():
    log = log_mod.Log(echo=False)
    driver = open_modem(board_mod.load(), log)
    mgr = ConnectionManager(driver, log, apn="")
    asyncio.create_task(mgr.run())
{body}
    print("STATUS", json.dumps(mgr.status))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def echo_server():
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def _echo(conn):
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def _run(make_device, echo_server, body, scenario, board="esp32-sim7080g", span=7200):
    device = make_device(board=board, modem=load_scenario(scenario))
    result = device.run(span, script=STACK.format(port=echo_server, body=body))
    out = {}
    for line in result.script_output.splitlines():
        key, _, rest = line.partition(" ")
        out.setdefault(key, []).append(rest)
    assert "STATUS" in out, result.script_output + "\n".join(result.errors)
    return result, out, json.loads(out["STATUS"][-1])


@pytest.mark.parametrize("family", sorted(BOARDS))
def test_each_family_registers_and_exchanges_bytes_with_a_real_server(
        make_device, echo_server, family):
    body = """
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, b"hello from the field"))
"""
    result, out, status = _run(make_device, echo_server, body, "good", BOARDS[family])
    assert out["ECHO"] == ["b'hello from the field'"]
    assert status["state"] == "connected" and status["identity"]["iccid"].startswith("89")
    assert len(status["identity"]["imei"]) == 15
    # The model counted the exchange over the air: payload both ways plus TCP/IP overhead.
    sockets = result.modem[-1]["sockets"]
    assert sockets[-1]["payload_up"] == sockets[-1]["payload_down"] == 20
    assert result.modem[-1]["air_up"] > 20


def test_thirty_minutes_without_coverage_then_recovery(make_device, echo_server):
    body = """
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
    print("ECHO", await exchange(mgr, b"back"))
"""
    _, out, status = _run(make_device, echo_server, body, "no-coverage-30m")
    states = json.loads(out["STATES"][0])
    down = [t for t, s in states if s != "connected" and 300 <= t]
    up_again = [t for t, s in states if s == "connected" and t > 2100]
    assert down and min(down) < 420, states  # noticed within a couple of checks
    assert up_again and up_again[0] < 2100 + 960, states  # back within a backoff period
    assert not [t for t, s in states if s == "connected" and 420 < t < 2100], states
    assert out["ECHO"] == ["b'back'"]
    assert any(reg[2] in ("searching", "not_registered") for reg in status["registration"])


@pytest.mark.parametrize("scenario,reason", [("denied", "denied"), ("sms-only", "SMS only")])
def test_a_network_that_refuses_data_is_reported_and_retried(
        make_device, echo_server, scenario, reason):
    body = """
    await until(1800)
    print("CONNECTED", mgr.connected.is_set())
"""
    _, out, status = _run(make_device, echo_server, body, scenario)
    assert out["CONNECTED"] == ["False"]
    assert reason in status["last_error"], status
    assert status["attempts"] >= 3  # it keeps trying, with backoff, not in a tight loop
    assert status["attempts"] < 60


def test_a_hung_modem_is_recovered_by_a_power_cycle(make_device, echo_server):
    body = """
    await mgr.wait_connected(600000)
    await until(1500)
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, b"alive"))
"""
    _, out, status = _run(make_device, echo_server, body, "hang")
    rungs = [rung for _, rung in status["escalations"]]
    assert "power_cycle" in rungs, status
    # The cheaper rungs came first and did not help: the model answers nothing until power
    # is cut.
    assert rungs.index("power_cycle") > rungs.index("resync"), rungs
    assert out["ECHO"] == ["b'alive'"]


def test_a_data_drop_mid_transfer_ends_the_socket_and_the_link_comes_back(
        make_device, echo_server):
    body = """
    await mgr.wait_connected(600000)
    sock = await mgr.open_socket("127.0.0.1", PORT)
    await sock.write(b"before")
    buf = bytearray(16)
    print("FIRST", bytes(buf[:await sock.read_into(buf)]))
    await until(620)
    try:
        await sock.write(b"after")
        n = await sock.read_into(buf)
        print("AFTER_DROP", n, sock.closed)
    except Exception as e:
        print("AFTER_DROP", "error", type(e).__name__)
    await until(800)
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, b"again"))
"""
    _, out, status = _run(make_device, echo_server, body, "drop")
    assert out["FIRST"] == ["b'before'"]
    assert out["AFTER_DROP"][0] in ("0 True", "error ModemError", "error ATError"), out
    assert "data session lost" in (status["last_error"] or ""), status
    assert out["ECHO"] == ["b'again'"]


def test_a_sim_swap_shows_as_a_new_iccid_after_the_next_power_on(make_device, echo_server):
    body = """
    await mgr.wait_connected(600000)
    print("ICCID", mgr.status["identity"]["iccid"])
    await until(3700)
    await driver.power_cycle()
    print("ICCID", (await driver.identity())["iccid"])
"""
    new_iccid = SCENARIOS["sim-swap"]["events"][0]["sim_swap"]
    _, out, _ = _run(make_device, echo_server, body, "sim-swap")
    assert len(out["ICCID"]) == 2 and out["ICCID"][0] != new_iccid
    assert out["ICCID"][1] == new_iccid


@pytest.mark.parametrize("family", sorted(BOARDS))
def test_console_diagnostics_read_identity_and_signal(make_device, family):
    """What provisioning stations and field technicians call over the console (raw REPL):
    one JSON line with the modem's identity, signal and registration."""
    device = make_device(board=BOARDS[family], modem=load_scenario("good"))
    result = device.run(600, script="from app import diag\ndiag.modem()\n")
    report = json.loads([ln for ln in result.script_output.splitlines()
                         if ln.startswith("{")][-1])
    assert report["ok"] is True, report
    assert report["family"] == family
    assert report["identity"]["iccid"].startswith("89")
    assert report["signal"]["rssi_dbm"] == -73  # the scenario's CSQ of 20
    assert "registered" in report["registration"]


def test_console_diagnostics_report_a_silent_modem_as_an_error(make_device):
    device = make_device(modem=None)  # no modem answers on the UART
    result = device.run(600, script="from app import diag\ndiag.modem()\n")
    report = json.loads([ln for ln in result.script_output.splitlines()
                         if ln.startswith("{")][-1])
    assert report["ok"] is False and "ATTimeout" in report["error"], report


def test_a_dead_modem_costs_one_board_reset_not_a_reset_loop(make_device):
    """The escalation ladder ends in a board reset, once: the boot after it keeps cycling the
    modem's power with backoff instead of resetting the board again and again."""
    device = make_device(modem=None)  # nothing ever answers on the modem's UART
    result = device.run(86400)
    assert result.errors == [], result.errors
    assert result.boots == 2, [b.reason for b in result.boot_log]
    assert result.boot_log[0].reason == "reset"
    log = device.console_log.read_text()
    for rung in ("resync", "soft_reset", "power_cycle", "board_reset"):
        assert "not answering: " + rung in log
    assert "no more of those" in log


def test_radio_off_parks_the_modem_until_asked_back(make_device, echo_server):
    body = """
    await mgr.wait_connected(600000)
    mgr.radio(False)
    await asyncio.sleep(60)
    print("PARKED", mgr.status["state"], mgr.connected.is_set())
    mgr.radio(True)
    await mgr.wait_connected(600000)
    print("ECHO", await exchange(mgr, b"on air"))
"""
    _, out, status = _run(make_device, echo_server, body, "good")
    assert out["PARKED"] == ["radio_off False"]
    assert out["ECHO"] == ["b'on air'"] and status["state"] == "connected"
