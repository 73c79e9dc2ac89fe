"""The modem model (sim/models/modem/) on a virtual device, under both interpreters.

Scripts run on the device in place of the firmware and speak raw AT over the board's modem UART
with the board's pins from /board.json, so these tests do not depend on the firmware's AT
driver. A real TCP echo server on 127.0.0.1 stands for the internet.
"""

from __future__ import annotations

import ast
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from checksuite import call

from musket_sim.scenario import SCENARIOS, load_scenario, luhn_digit

BOARDS = {"sim7080": "esp32-sim7080g", "sim7600": "esp32-a7670", "bg95": "esp32s3-bg95"}
SEG, SYN, RST, CLOSE = 52, 60, 40, 104  # the model's documented TCP/IP overheads

# The device side: raw AT helpers (checks/atscript.py), each family's flow
# (checks/model_flows.py) and the scenario steps (checks/model_steps.py), on the flash.
CHECKS = Path(__file__).parent / "checks"
DEVICE_MODULES = [CHECKS / "atscript.py", CHECKS / "model_flows.py", CHECKS / "model_steps.py"]

BOOT_URCS = {
    "sim7080": b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nSMS Ready\r\n",
    "sim7600": b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n\r\nPB DONE\r\n",
    "bg95": b'\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n\r\n'
            b'+QIND: SMS DONE\r\n\r\nAPP RDY\r\n',
}


# -- helpers ---------------------------------------------------------------------------------


class EchoServer:
    """A TCP server on 127.0.0.1 that echoes what it receives and hangs up after echoing a
    chunk that contains b"CLOSE"."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.connections = 0
        self.ended = threading.Event()  # a connection's other end went away
        self.threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self.ended.set()
                    return
                self.received.extend(data)
                conn.sendall(data)
                if b"CLOSE" in data:
                    return

    def close(self) -> None:
        self.sock.close()
        for t in self.threads:
            t.join(timeout=2)
        self._accepter.join(timeout=2)


@pytest.fixture
def echo_server():
    server = EchoServer()
    yield server
    server.close()


def closed_port() -> int:
    """A loopback port nobody listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_script(make_device, family: str, step: str, scenario: dict | None = None,
               span: float = 600, args: tuple = ()) -> tuple[dict, object]:
    """Runs `step` ("module.function" in checks/) with `args` on a device with the family's
    board; returns the shown values by key, and the run result."""
    device = make_device(BOARDS[family], modem=load_scenario(scenario or {}),
                         device_modules=DEVICE_MODULES)
    result = device.run(span, script=call(step, *args))
    shown = {}
    for line in result.script_output.splitlines():
        k, _, value = line.partition(" ")
        if k.isupper() and value:
            shown[k] = ast.literal_eval(value)
    assert not result.errors, (result.errors, result.script_output)
    return shown, result


def echo_counts(sends: list[int]) -> tuple[int, int]:
    """Air bytes up and down, by the model's formula, for a socket that is opened, echoes each
    send (each under the MSS) and is then closed by the peer."""
    up = SYN + SEG + sum(n + SEG for n in sends) + SEG * len(sends) + CLOSE
    down = SYN + SEG * len(sends) + sum(n + SEG for n in sends) + CLOSE
    return up, down


def ok(*lines: str) -> bytes:
    return b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines) + b"\r\nOK\r\n"


# -- the three dialects ----------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(BOARDS))
def test_family_boots_registers_and_carries_tcp(make_device, echo_server, family):
    out, result = run_script(make_device, family, "model_flows.flow",
                             {"register_s": 5}, args=(echo_server.port,))

    assert out["STATUS_OFF"] is False
    assert out["SHORT_PULSE"] == (b"", False)
    assert out["BOOT"] == BOOT_URCS[family]
    assert out["STATUS_ON"] is True
    assert out["AT"] == b"AT\r\r\nOK\r\n"  # echo on at power-on
    assert out["ATE0"] == b"ATE0\r\r\nOK\r\n"

    imei = re.fullmatch(rb"\r\n(\d{15})\r\n\r\nOK\r\n", out["CGSN"]).group(1).decode()
    assert luhn_digit(imei[:14]) == imei[14]
    assert re.fullmatch(rb"\r\n26201\d{10}\r\n\r\nOK\r\n", out["CIMI"])
    iccid_line = {"sim7080": rb"(89\d{17})", "sim7600": rb"\+ICCID: (89\d{17})",
                  "bg95": rb"\+QCCID: (89\d{17})F"}[family]
    assert re.fullmatch(rb"\r\n" + iccid_line + rb"\r\n\r\nOK\r\n", out["ICCID"])
    assert out["CGMR"] == ok({"sim7080": "Revision:1951B16SIM7080",
                              "sim7600": "+CGMR: A011B07A7670M7_F",
                              "bg95": "BG95M3LAR02A03"}[family])
    assert out["CSQ"] == ok("+CSQ: 20,99")

    # registration: searching at first, registered register_s after the radio came up
    act = 7
    assert out["CEREG_SEARCHING"] == ok("+CEREG: 0,2")
    reg = rb'\+CEREG: 1,"[0-9A-F]{4}","[0-9A-F]{7}",7'
    assert re.fullmatch(rb"\r\n" + reg + rb"\r\n", out["REG_URC"])
    assert 4950 <= out["REG_MS"] <= 5050
    assert re.fullmatch(rb'\r\n\+CEREG: 2,1,"[0-9A-F]{4}","[0-9A-F]{7}",7\r\n\r\nOK\r\n',
                        out["CEREG"])
    assert out["COPS"] == ok('+COPS: 0,0,"MusketNet",%d' % act)

    if family == "sim7080":
        assert re.fullmatch(rb"\r\n\+CPSI: LTE CAT-M1,Online,262-01,0x[0-9A-F]{4},\d+,123,"
                            rb"EUTRAN-BAND20,6300,5,5,-10,-95,-73,12\r\n\r\nOK\r\n", out["SIGNAL"])
        assert out["PDP"] == b"\r\nOK\r\n\r\n+APP PDP: 0,ACTIVE\r\n"
        assert re.fullmatch(rb'\r\n\+CNACT: 0,1,"10\.\d+\.\d+\.\d+"\r\n' +
                            rb'(\r\n\+CNACT: \d,0,"0\.0\.0\.0"\r\n){3}\r\nOK\r\n', out["PDP_Q"])
        assert out["OPEN"] == ok("+CAOPEN: 0,0")
        assert out["SEND"] == b"\r\n> \r\nOK\r\n"
        assert out["DATA_URC"] == b"\r\n+CADATAIND: 0\r\n"
        assert out["READ"] == b"\r\n+CARECV: 11,hello world\r\n\r\nOK\r\n"
        assert out["READ_EMPTY"] == ok("+CARECV: 0")
        assert out["CLOSED_URC"] == b"\r\n+CADATAIND: 0\r\n\r\n+CASTATE: 0,0\r\n"
        assert out["READ2"] == b"\r\n+CARECV: 5,CLOSE\r\n\r\nOK\r\n"
        assert out["CLOSE"] == b"\r\nOK\r\n"
        assert out["OFF"] == b"\r\nNORMAL POWER DOWN\r\n"
    elif family == "sim7600":
        assert re.fullmatch(rb"\r\n\+CPSI: LTE,Online,262-01,0x[0-9A-F]{4},\d+,123,"
                            rb"EUTRAN-BAND3,1300,5,5,-100,-950,-730,16\r\n\r\nOK\r\n",
                            out["SIGNAL"])
        assert out["PDP"] == b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
        assert out["PDP_Q"] == b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n"
        assert out["OPEN"] == b"\r\nOK\r\n\r\n+CIPOPEN: 0,0\r\n"
        assert out["SEND"] == b"\r\n> \r\nOK\r\n\r\n+CIPSEND: 0,11,11\r\n"
        assert out["DATA_URC"] == b"\r\n+CIPRXGET: 1,0\r\n"
        assert out["READ"] == b"\r\n+CIPRXGET: 2,0,5,6\r\nhello\r\n\r\nOK\r\n"
        assert out["READ_REST"] == b"\r\n+CIPRXGET: 2,0,6,0\r\n world\r\n\r\nOK\r\n"
        assert out["CLOSED_URC"] == b"\r\n+CIPRXGET: 1,0\r\n\r\n+IPCLOSE: 0,1\r\n"
        assert out["READ2"] == b"\r\n+CIPRXGET: 2,0,5,0\r\nCLOSE\r\n\r\nOK\r\n"
        assert out["CLOSE"] == b"\r\nOK\r\n\r\n+CIPCLOSE: 0,0\r\n"
        # the RESET line reboots the modem; the supply line switches it off at once
        assert out["RESET_STATUS"] is False
        assert out["RESET_BOOT"] == BOOT_URCS["sim7600"]
        assert out["RESET_AT"] == b"AT\r\r\nOK\r\n"  # a reboot brings the echo back
    else:
        assert out["SIGNAL"] == ok('+QCSQ: "eMTC",-73,-95,160,-10')
        assert out["NWINFO"] == ok('+QNWINFO: "eMTC","26201","LTE BAND 20",6300')
        assert out["PDP"] == b"\r\nOK\r\n"
        assert re.fullmatch(rb'\r\n\+QIACT: 1,1,1,"10\.\d+\.\d+\.\d+"\r\n\r\nOK\r\n',
                            out["PDP_Q"])
        assert out["OPEN"] == b"\r\nOK\r\n\r\n+QIOPEN: 0,0\r\n"
        assert out["SEND"] == b"\r\n> \r\nSEND OK\r\n"
        assert out["DATA_URC"] == b'\r\n+QIURC: "recv",0\r\n'
        assert out["READ"] == b"\r\n+QIRD: 11\r\nhello world\r\n\r\nOK\r\n"
        assert out["READ_EMPTY"] == ok("+QIRD: 0")
        assert out["CLOSED_URC"] == b'\r\n+QIURC: "recv",0\r\n\r\n+QIURC: "closed",0\r\n'
        assert out["READ2"] == b"\r\n+QIRD: 5\r\nCLOSE\r\n\r\nOK\r\n"
        assert out["CLOSE"] == b"\r\nOK\r\n"
        assert out["OFF"] == b"\r\nOK\r\n\r\nPOWERED DOWN\r\n"
    assert out["STATUS_DOWN"] is False

    assert bytes(echo_server.received) == b"hello worldCLOSE"
    (figures,) = result.modem
    up, down = echo_counts([11, 5])
    assert echo_counts([11]) == (11 + 320, 11 + 268)  # the docstring's worked example
    assert (up, down) == (440, 388)
    assert figures["family"] == family
    assert figures["power_cycles"] == 1
    assert figures["sockets"] == [{"host": "127.0.0.1", "port": echo_server.port,
                                   "payload_up": 16, "payload_down": 16,
                                   "air_up": up, "air_down": down}]
    assert (figures["air_up"], figures["air_down"]) == (up, down)
    assert (figures["payload_up"], figures["payload_down"]) == (16, 16)
    assert figures["uart_rx"] > 0 and figures["uart_tx"] > 0


# -- scenario behaviours ---------------------------------------------------------------------

def test_coverage_loss_drops_sockets_then_registration_returns(make_device, echo_server):
    scenario = {"register_s": 6, "events": [{"at": 40, "coverage": False},
                                            {"at": 70, "coverage": True}]}
    out, _ = run_script(make_device, "sim7080", "model_steps.coverage_loss",
                        scenario, args=(echo_server.port,))
    assert out["OPEN"] == ok("+CAOPEN: 0,0")
    assert out["LOST"] == b"\r\n+CEREG: 2\r\n"
    assert 40000 <= out["LOST_MS"] <= 40100
    assert out["CSQ"] == ok("+CSQ: 99,99")
    assert out["DATA_LOST"] == b"\r\n+CASTATE: 0,0\r\n\r\n+APP PDP: 0,DEACTIVE\r\n"
    assert 48000 <= out["DATA_LOST_MS"] <= 48100
    assert out["SEND"] == b"\r\nERROR\r\n"
    assert 76000 <= out["BACK_MS"] <= 76100
    assert out["CNACT"] == b"\r\nOK\r\n\r\n+APP PDP: 0,ACTIVE\r\n"
    assert echo_server.ended.wait(5), "the host socket is closed when the data path is lost"


def test_denied_registration_until_cleared(make_device):
    scenario = {"register_s": 5, "events": [{"at": 0, "deny": True}, {"at": 30, "deny": False}]}
    out, _ = run_script(make_device, "bg95", "model_steps.denied_until_cleared", scenario)
    assert out["DENIED"] == ok("+CEREG: 2,3")
    assert out["QIACT"] == b"\r\nERROR\r\n"
    assert 35000 <= out["CLEARED_MS"] <= 35100  # searching again from the moment it clears
    assert out["QIACT2"] == b"\r\nOK\r\n"


def test_sms_only_looks_attached_but_data_attach_fails(make_device):
    out, _ = run_script(make_device, "sim7600", "model_steps.sms_only",
                        {"events": [{"at": 0, "sms_only": True}]})
    assert out["CREG"] == ok("+CREG: 0,6")
    assert out["NETOPEN"] == b"\r\nOK\r\n\r\n+NETOPEN: 1\r\n"


def test_hang_lasts_until_pwrkey_power_cycle(make_device):
    out, result = run_script(make_device, "sim7080", "model_steps.hang_until_power_cycle",
                             {"events": [{"at": 20, "hang": True}]})
    assert out["HUNG"] == b""
    assert out["HUNG_STATUS"] is True
    assert out["STILL_HUNG"] == b""
    assert out["OFF_STATUS"] is False
    assert out["REBOOTED"] == BOOT_URCS["sim7080"]
    assert out["AT"] == b"AT\r\r\nOK\r\n"
    assert result.modem[0]["power_cycles"] == 2


def test_drop_data_closes_sockets_and_pdp_but_stays_registered(make_device, echo_server):
    out, _ = run_script(make_device, "bg95", "model_steps.drop_data",
                        {"events": [{"at": 40, "drop_data": True}]},
                        args=(echo_server.port,))
    assert out["OPEN"] == b"\r\nOK\r\n\r\n+QIOPEN: 0,0\r\n"
    assert out["DROP"] == b'\r\n+QIURC: "pdpdeact",1\r\n'
    assert 40000 <= out["DROP_MS"] <= 40100
    assert re.fullmatch(rb'\r\n\+CEREG: 2,1,.*\r\n\r\nOK\r\n', out["CEREG"])
    assert out["QIACT"] == b"\r\nOK\r\n"
    assert out["QISEND"] == b"\r\nERROR\r\n"
    assert echo_server.ended.wait(5)


def test_garbage_and_slow_replies(make_device):
    scenario = {"events": [{"at": 20, "garbage": "hex:00ff0d0a"}, {"at": 21, "garbage": "NOISE"},
                           {"at": 22, "garbage_bytes": 16}, {"at": 25, "slow_ms": 700}]}
    out, result = run_script(make_device, "sim7600", "model_steps.garbage_and_slow_replies",
                             scenario)
    assert out["NOISE"][:9] == b"\x00\xff\r\nNOISE"
    assert len(out["NOISE"]) == 9 + 16
    assert out["SLOW"] == b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    assert 700 <= out["SLOW_MS"] <= 800


def test_sim_swap_is_seen_after_a_power_cycle(make_device):
    new = "8949017000000000001"
    out, _ = run_script(make_device, "bg95", "model_steps.sim_swap",
                        {"events": [{"at": 15, "sim_swap": new}]})
    assert out["BEFORE"] == out["STILL"]
    assert out["BEFORE"] != ok("+QCCID: " + new + "F")
    assert out["AFTER"] == ok("+QCCID: " + new + "F")
    assert out["IMSI_AFTER"] != out["IMSI_BEFORE"]


def test_only_loopback_hosts_are_reached(make_device, echo_server):
    scenario = {"hosts": {"broker.example.com": "127.0.0.1:%d" % echo_server.port}}
    out, result = run_script(make_device, "sim7080", "model_steps.loopback_only", scenario,
                             args=(echo_server.port, closed_port()))
    assert out["OFF_MACHINE"] == ok("+CAOPEN: 0,27")
    assert out["NAME"] == ok("+CAOPEN: 1,20")
    assert out["REFUSED"] == ok("+CAOPEN: 2,23")
    assert out["MAPPED"] == ok("+CAOPEN: 3,0")
    deadline = time.monotonic() + 2  # the server's thread takes the connection in its time
    while echo_server.connections < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert echo_server.connections == 1  # only the mapped name connected
    figures = result.modem[0]
    refused = [s for s in figures["sockets"] if s["port"] != echo_server.port]
    assert refused == [{"host": "127.0.0.1", "port": refused[0]["port"], "payload_up": 0,
                        "payload_down": 0, "air_up": SYN, "air_down": RST}]


def test_uart_rxbuf_limits_what_the_firmware_can_take_in(make_device, echo_server):
    # The modem sends at the wire speed of the baud rate: a firmware that keeps reading gets a
    # 1 KB read through the ESP32's default 256-byte rxbuf; one that looks away loses bytes.
    out, _ = run_script(make_device, "sim7080", "model_steps.uart_rxbuf", args=(echo_server.port,))
    reply = len(b"\r\n+CARECV: 1000,") + 1000 + len(b"\r\n\r\nOK\r\n")
    assert out["READING"] == (reply, 0)
    assert out["ASLEEP"] == (256, reply - 256)


def test_denied_registration_carries_its_cause_and_ceer_says_why(make_device):
    # Under AT+CEREG=3 a denial carries <cause_type> 0 and the EMM reject cause; AT+CEER words
    # it. Location-only (n=2) lines stay as they were.
    scenario = {"register_s": 2, "events": [{"at": 20, "deny": True, "reject_cause": 11}]}
    out, _ = run_script(make_device, "bg95", "model_steps.denial_cause", scenario)
    cell = rb'"[0-9A-F]{4}","[0-9A-F]{7}",7'
    assert re.fullmatch(rb"\r\n\+CEREG: 3," + cell + rb",0,11\r\n", out["URC"])
    assert re.fullmatch(rb"\r\n\+CEREG: 3,3," + cell + rb",0,11\r\n\r\nOK\r\n", out["READ"])
    assert out["CEER"] == ok("+CEER: PLMN not allowed")
    assert out["N2"] == ok("+CEREG: 2,3")


# A send on a socket the modem lost without a word: each family's error in place of ">".
REFUSED_SENDS = {
    "sim7080": ('AT+CAOPEN=0,0,"TCP","127.0.0.1",%(port)d', "AT+CNACT=0,1",
                b"+APP PDP: 0,ACTIVE\r\n", "AT+CASEND=0,5",
                b"\r\n+CME ERROR: operation not allowed\r\n"),
    "sim7600": ('AT+CIPOPEN=0,"TCP","127.0.0.1",%(port)d', "AT+NETOPEN", b"+NETOPEN: 0\r\n",
                "AT+CIPSEND=0,5", b"\r\n+CIPERROR: 4\r\n"),
    "bg95": ('AT+QIOPEN=1,0,"TCP","127.0.0.1",%(port)d,0,0', "AT+QIACT=1", b"OK\r\n",
             "AT+QISEND=0,5", b"\r\nERROR\r\n"),
}


@pytest.mark.parametrize("family", sorted(BOARDS))
def test_sockets_lost_without_a_word_refuse_the_next_send(make_device, echo_server, family):
    opener, bearer, bearer_up, send, refusal = REFUSED_SENDS[family]
    out, _ = run_script(make_device, family, "model_steps.refused_send",
                        {"events": [{"at": 60, "drop_sockets": True}]},
                        args=(opener % {"port": echo_server.port}, bearer, bearer_up, send))
    assert out["OPEN_MS"] < 60000
    assert out["QUIET"] == b"", "no URC says the sockets went"
    assert out["REFUSED"] == refusal
    assert echo_server.ended.wait(5), "the host socket is closed"


def test_a_connection_closed_as_it_opens(make_device, echo_server):
    scenario = {"events": [{"at": 1, "close_after_open": True}]}
    out, result = run_script(make_device, "sim7080", "model_steps.closed_as_it_opens",
                             scenario, args=(echo_server.port,))
    assert out["FIRST"] == ok("+CAOPEN: 0,0") + b"\r\n+CASTATE: 0,0\r\n"
    assert out["FIRST_TAIL"] == b""
    assert out["SEND"] == b"\r\nERROR\r\n"
    assert out["CLOSE"] == b"\r\nOK\r\n"
    assert out["SECOND"] == ok("+CAOPEN: 1,0") and out["SECOND_TAIL"] == b"", "only once"
    assert echo_server.ended.wait(5)
    first = result.modem[0]["sockets"][0]
    assert (first["air_up"], first["air_down"]) == (SYN + SEG + CLOSE, SYN + CLOSE)


def test_a_modem_that_restarts_by_itself(make_device):
    out, result = run_script(make_device, "sim7080", "model_steps.restart_by_itself",
                             {"events": [{"at": 30, "modem_reset": True}]})
    assert 30000 <= out["RESTART_MS"] <= 30000 + 5000
    assert out["BOOT"] == BOOT_URCS["sim7080"]
    assert out["AT"] == b"AT\r\r\nOK\r\n", "echo is back on: settings are lost"
    assert out["CEREG"].startswith(b"AT+CEREG?\r\r\n+CEREG: 0,")
    assert result.modem[0]["reboots"] == 1


def test_quectel_push_scenario_pushes_what_arrives(make_device, echo_server):
    out, _ = run_script(make_device, "bg95", "model_steps.quectel_push",
                        {"push": True}, args=(echo_server.port,))
    assert out["SEND"] == b"\r\n> \r\nSEND OK\r\n"
    assert out["PUSHED"] == b'\r\n+QIURC: "recv",0,11\r\nhello world'
    assert out["QIRD"] == ok("+QIRD: 0")


def test_sim7000_answers_the_bearer_commands_in_their_older_form(make_device, echo_server):
    out, result = run_script(make_device, "sim7080", "model_steps.sim7000_bearer",
                             {"family": "sim7000"},
                             args=(echo_server.port,))
    assert out["CGMR"] == ok("Revision:1351B04SIM7000G")
    assert out["DOWN"] == ok('+CNACT: 0,"0.0.0.0"')
    assert out["UP"] == b"\r\nOK\r\n\r\n+APP PDP: ACTIVE\r\n"
    assert re.fullmatch(rb'\r\n\+CNACT: 1,"10\.\d+\.\d+\.\d+"\r\n\r\nOK\r\n', out["READ"])
    assert out["OPEN"] == ok("+CAOPEN: 0,0")
    assert out["OFF"] == b"\r\nOK\r\n\r\n+CASTATE: 0,0\r\n\r\n+APP PDP: DEACTIVE\r\n" or \
        out["OFF"] == b"\r\nOK\r\n\r\n+APP PDP: DEACTIVE\r\n"
    assert result.modem[0]["family"] == "sim7000"


def test_an_iccid_as_the_sim_reports_it(make_device):
    out, _ = run_script(make_device, "sim7080", "model_steps.iccid_as_reported",
                        {"iccid": "89860070090A6019125F"})
    assert out["CCID"] == ok("89860070090A6019125F")
    assert re.fullmatch(rb"\r\n26201\d{10}\r\n\r\nOK\r\n", out["CIMI"])


def test_no_sim_and_error_formats(make_device):
    out, _ = run_script(make_device, "sim7080", "model_steps.no_sim_and_errors",
                        {"sim_present": False})
    assert out["BOOT"] == b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: NOT INSERTED\r\n"
    assert out["CMEE0"] == b"\r\nERROR\r\n"
    assert out["CMEE1"] == b"\r\n+CME ERROR: 10\r\n"
    assert out["CHAIN"] == b"\r\n+CME ERROR: SIM not inserted\r\n"
    assert out["UNKNOWN"] == b"\r\nERROR\r\n"
    assert out["BAD_PARAM"] == b"\r\n+CME ERROR: incorrect parameters\r\n"
    assert out["CEREG"] == ok("+CEREG: 0,0")


def test_stale_context_apn_fails_data_attach_until_fixed(make_device):
    out, _ = run_script(make_device, "sim7600", "model_steps.stale_apn", SCENARIOS["stale-apn"])
    assert out["CGDCONT"] == ok('+CGDCONT: 1,"IP","internet.old","0.0.0.0",0,0,0,0')
    assert out["WRONG"] == b"\r\nOK\r\n\r\n+NETOPEN: 1\r\n"
    assert out["RIGHT"] == b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
    assert re.fullmatch(rb'\r\n\+CGPADDR: 1,"10\.\d+\.\d+\.\d+"\r\n\r\nOK\r\n', out["ADDR"])


def test_modem_state_outlives_an_esp32_reset(make_device):
    # Boot 1 (the script) switches the modem on, turns echo off, waits for the hang, resets the
    # ESP32; boot 2 (main.py) finds the modem still powered and still hung: only PWRKEY helps.
    device = make_device(BOARDS["sim7080"], modem=load_scenario({"events": [
        {"at": 25, "hang": True}]}), device_modules=DEVICE_MODULES,
        files={"main.py": call("model_steps.after_reset").encode()})
    result = device.run(200, script=call("model_steps.reset_while_hung"), max_boots=2)
    log = device.console_log.read_text()
    shown = dict(line.split(" ", 1) for line in log.splitlines() if line.startswith("B2_"))
    assert "B1_AT b'\\r\\nOK\\r\\n'" in result.script_output
    assert shown["B2_STATUS"] == "True"
    assert shown["B2_AT"] == "b''"
    assert shown["B2_FRESH"] == repr(b"AT\r\r\nOK\r\n")
    # Switched on once in each boot: the ESP32's reset did not touch the modem's power.
    assert result.modem[0]["power_cycles"] == 2
