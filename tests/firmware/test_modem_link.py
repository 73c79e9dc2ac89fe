"""The firmware's whole modem layer (AT channel, family driver, connection manager) against the
modem model, under both interpreters: a real TCP exchange with a server on loopback for each
family, and the radio scenarios the field throws at a device."""

from __future__ import annotations

import errno
import json
import socket
import threading
from pathlib import Path

import pytest

from musket_sim.scenario import SCENARIOS, load_scenario

BOARDS = {"sim7080": "esp32-sim7080g", "sim7600": "esp32-a7670", "bg95": "esp32s3-bg95"}

# The modem layer as the firmware builds it, a connection manager running, and the steps the
# tests run on top: modules on the device's flash (checks/linkstack.py, checks/link_steps.py).
CHECKS = Path(__file__).parent / "checks"
SCRIPT = "import linkstack, link_steps\nlinkstack.run({port}, link_steps.{step}, {args!r})\n"


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


def _run(make_device, echo_server, step, scenario, board="esp32-sim7080g", span=7200,
         args=()):
    """Runs `step` of checks/link_steps.py on a device whose modem plays `scenario`; returns
    the run, the values it printed by tag, and the manager's status at the end."""
    device = make_device(board=board, modem=load_scenario(scenario),
                         device_modules=[CHECKS / "linkstack.py", CHECKS / "link_steps.py"])
    result = device.run(span, script=SCRIPT.format(port=echo_server, step=step,
                                                   args=tuple(args)))
    out = {}
    for line in result.script_output.splitlines():
        key, _, rest = line.partition(" ")
        out.setdefault(key, []).append(rest)
    assert "STATUS" in out, result.script_output + "\n".join(result.errors)
    return result, out, json.loads(out["STATUS"][-1])


@pytest.mark.parametrize("family", sorted(BOARDS))
def test_each_family_registers_and_exchanges_bytes_with_a_real_server(
        make_device, echo_server, family):
    result, out, status = _run(make_device, echo_server, "echo", "good", BOARDS[family],
                               args=(b"hello from the field",))
    assert out["ECHO"] == ["b'hello from the field'"]
    assert status["state"] == "connected" and status["identity"]["iccid"].startswith("89")
    assert len(status["identity"]["imei"]) == 15
    # What the status shows of the network: the SIM, the operator, the bearer's address.
    assert (status["sim"], status["operator"], status["bearer"]) == ("READY", "MusketNet", True)
    assert status["ip"].startswith("10.") and status["resets"] == 0
    assert status["registration"]["state"] == "registered_home"
    # The model counted the exchange over the air: payload both ways plus TCP/IP overhead.
    sockets = result.modem[-1]["sockets"]
    assert sockets[-1]["payload_up"] == sockets[-1]["payload_down"] == 20
    assert result.modem[-1]["air_up"] > 20


def test_thirty_minutes_without_coverage_then_recovery(make_device, echo_server):
    _, out, status = _run(make_device, echo_server, "outage_and_recovery", "no-coverage-30m")
    states = json.loads(out["STATES"][0])
    down = [t for t, s in states if s != "connected" and 300 <= t]
    up_again = [t for t, s in states if s == "connected" and t > 2100]
    assert down and min(down) < 420, states  # noticed within a couple of checks
    assert up_again and up_again[0] < 2100 + 960, states  # back within a backoff period
    assert not [t for t, s in states if s == "connected" and 420 < t < 2100], states
    assert out["ECHO"] == ["b'back'"]
    assert any(reg[2] in ("searching", "not_registered") for reg in status["history"])


@pytest.mark.parametrize("scenario,reason", [("denied", "denied"), ("sms-only", "SMS only")])
def test_a_network_that_refuses_data_is_reported_and_retried(
        make_device, echo_server, scenario, reason):
    _, out, status = _run(make_device, echo_server, "connected_at_1800", scenario)
    assert out["CONNECTED"] == ["False"]
    assert reason in status["last_error"], status
    assert status["attempts"] >= 3  # it keeps trying, with backoff, not in a tight loop
    assert status["attempts"] < 60


def test_a_hung_modem_is_recovered_by_a_power_cycle(make_device, echo_server):
    _, out, status = _run(make_device, echo_server, "echo_after_1500", "hang")
    rungs = [rung for _, rung in status["escalations"]]
    assert "power_cycle" in rungs, status
    # The cheaper rungs came first and did not help: the model answers nothing until power
    # is cut.
    assert rungs.index("power_cycle") > rungs.index("resync"), rungs
    assert out["ECHO"] == ["b'alive'"]


def test_a_data_drop_mid_transfer_ends_the_socket_and_the_link_comes_back(
        make_device, echo_server):
    # The bearer-lost URC reaches the manager at once: it leaves "connected" within a second
    # of virtual time, not at its next minute's check. The socket says ECONNRESET.
    _, out, status = _run(make_device, echo_server, "data_drop", "drop")
    assert out["FIRST"] == ["b'before'"]
    assert out["BEFORE"] == ["connected"]
    acted_ms, state = out["ACTED_MS"][0].split()
    assert 0 <= int(acted_ms) < 1000 and state == "backoff", out["ACTED_MS"]
    assert out["AFTER_DROP"] == ["OSError %d" % errno.ECONNRESET], out
    assert "data session lost (bearer lost: +APP PDP: 0,DEACTIVE)" in status["last_error"]
    assert out["ECHO"] == ["b'again'"]


def test_a_sim_swap_shows_as_a_new_iccid_after_the_next_power_on(make_device, echo_server):
    new_iccid = SCENARIOS["sim-swap"]["events"][0]["sim_swap"]
    _, out, _ = _run(make_device, echo_server, "sim_swap", "sim-swap")
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
    _, out, status = _run(make_device, echo_server, "radio_off", "good")
    assert out["PARKED"] == ["radio_off False"]
    assert out["ECHO"] == ["b'on air'"] and status["state"] == "connected"


# -- what real modems do, end to end ------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(BOARDS))
def test_a_send_refused_in_place_of_the_prompt_fails_at_once(make_device, echo_server, family):
    # silent-close: at 600 s the modem loses its sockets without a URC; the next send gets
    # the family's error instead of a ">" prompt, and ends at once, not after its timeout.
    _, out, status = _run(make_device, echo_server, "send_refused", "silent-close",
                          BOARDS[family])
    number, elapsed, message = out["REFUSED"][0].split(" ", 2)
    assert int(number) == errno.EIO and int(elapsed) < 100, out["REFUSED"]
    assert {"sim7080": "+CME ERROR: operation not allowed", "sim7600": "+CIPERROR: 4",
            "bg95": ": ERROR"}[family] in message
    assert out["ECHO"] == ["b'again'"] and status["state"] == "connected"


@pytest.mark.parametrize("family", ["sim7080", "bg95"])
def test_an_iccid_with_hex_digits_and_padding(make_device, echo_server, family):
    _, out, status = _run(make_device, echo_server, "echo", "hex-iccid", BOARDS[family],
                          args=(b"hex",))
    assert status["identity"]["iccid"] == "89860070090A6019125"
    assert out["ECHO"] == ["b'hex'"]


def test_a_sim7000_on_a_sim7080_board(make_device, echo_server):
    # The SIM7080 driver meets the SIM7000's older bearer forms and speaks them back.
    result, out, status = _run(make_device, echo_server, "sim7000_detach", "sim7000")
    assert out["ECHO"] == ["b'seven thousand'"]
    assert status["ip"] is None and out["DETACHED"] == ["False None"]
    assert result.modem[-1]["family"] == "sim7000"
    assert status["identity"]["revision"] == "1351B04SIM7000G"


def test_a_connection_the_network_closes_as_it_opens_stays_closed(make_device, echo_server):
    _, out, _ = _run(make_device, echo_server, "closed_on_open", "close-on-open")
    assert out["OPENED"] == ["True 0"]
    assert out["WRITE"] == [str(errno.ECONNRESET)]
    assert out["ECHO"] == ["b'next one'"]


def test_quectel_direct_push_carries_the_data(make_device, echo_server):
    # quectel-push: the modem pushes what arrives; the driver never reads with AT+QIRD.
    result, out, _ = _run(make_device, echo_server, "direct_push", "quectel-push",
                          BOARDS["bg95"])
    assert out["ECHO"] == ["b'pushed to the device'"]
    assert out["READS"] == ["0"]
    assert result.modem[-1]["sockets"][-1]["payload_down"] == 20


@pytest.mark.parametrize("family", sorted(BOARDS))
def test_a_modem_that_restarts_by_itself_is_noticed_at_once(make_device, echo_server, family):
    _, out, status = _run(make_device, echo_server, "modem_restart", "modem-reset",
                          BOARDS[family])
    # Nothing tells of the restart before the modem's boot URCs, which the model sends once
    # booted (at most 0.9 x the board's boot_ms); the manager acts within a second of them.
    from musket.boards import load_board
    boot_ms = 0.9 * load_board(BOARDS[family]).modem.boot_ms
    assert 0 <= int(out["ACTED_MS"][0]) < boot_ms + 1000, out
    assert status["resets"] == 1 and status["boot"], status
    assert "modem restarted by itself: RDY" in status["last_error"]
    assert out["ECHO"] == ["b'after the restart'"]


def test_a_denial_shows_its_cause_and_the_modems_words(make_device, echo_server):
    _, _, status = _run(make_device, echo_server, "idle_two_minutes", "denied")
    assert status["registration"]["state"] == "denied"
    assert status["registration"]["cause"] == 11  # from +CEREG under AT+CEREG=3
    assert status["ceer"] == "PLMN not allowed"
    assert "cause 11" in status["last_error"]


def test_no_sim_is_said_plainly(make_device, echo_server):
    _, _, status = _run(make_device, echo_server, "idle_two_minutes", "no-sim")
    assert status["sim"] == "SIM not inserted"
    assert status["last_error"] == "sim: SIM not inserted"
    assert status["identity"] is None and status["state"] == "backoff"
