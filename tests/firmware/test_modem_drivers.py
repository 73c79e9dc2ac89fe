"""The three modem drivers against a fake modem on the virtual board's UART
(driverharness.py): each family's dialect for identity, signal, registration, the bearer and
sockets, and how each ends on errors, garbage and timeouts."""

from __future__ import annotations

import errno

import pytest
from driverharness import BOARDS, CME, COPS, ERROR, FAMILIES, OK, SOCKET, info, run

# -- per-family dialect ------------------------------------------------------------------------

ICCID = {
    "sim7080": (b"AT+CCID\r", info("89882806660001234568"), "89882806660001234568"),
    "sim7600": (b"AT+CICCID\r", info("+ICCID: 8944500102198304826F"), "8944500102198304826"),
    "bg95": (b"AT+QCCID\r", info("+QCCID: 89860025128306012478"), "89860025128306012478"),
}
REVISION = {
    "sim7080": (info("Revision:1951B04SIM7080"), "1951B04SIM7080"),
    "sim7600": (info("+CGMR: A011B07A7670M7"), "A011B07A7670M7"),
    "bg95": (info("BG95M3LAR02A03"), "BG95M3LAR02A03"),
}
PDP_CONFIG = {
    "sim7080": b'AT+CNCFG=0,1,"iot.example"\r',
    "sim7600": b"AT+CSOCKSETPN=1\r",
    "bg95": b'AT+QICSGP=1,1,"iot.example","","",0\r',
}
INIT = {"sim7080": [], "sim7600": [b"AT+CIPRXGET=1\r"], "bg95": []}
CPIN = b"AT+CPIN?\r"


def identity_table(family):
    cmd, reply, _ = ICCID[family]
    return {CPIN: info("+CPIN: READY"), cmd: reply, b"AT+CGSN\r": info("352099001761481"),
            b"AT+CIMI\r": info("460001234567890"), b"AT+CGMR\r": REVISION[family][0]}


@pytest.mark.parametrize("family", FAMILIES)
def test_identity_reads_and_normalises(make_device, family):
    sent, shown = run(make_device, family, identity_table(family), "driver_reads.identity")
    assert sent == [CPIN, ICCID[family][0], b"AT+CGSN\r", b"AT+CIMI\r", b"AT+CGMR\r"]
    expected = {"iccid": ICCID[family][2], "imei": "352099001761481", "imsi": "460001234567890",
                "revision": REVISION[family][1]}
    assert shown["ID"] == expected
    assert shown["STATUS"] == [expected, "READY"]


# ICCIDs as SIMs report them: an issuer's hex digit (any case) and the F pad; the Luhn check
# applies to an all-decimal one only.
HEX_ICCIDS = {
    "sim7080": (b"89860070090a6019125F", "89860070090A6019125"),
    "sim7600": (b"+ICCID: 898600700907A6019125", "898600700907A6019125"),
    "bg95": (b"+QCCID: 89860070090A6019125F", "89860070090A6019125"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_identity_takes_hex_iccids_and_checks_luhn_on_decimal_ones(make_device, family):
    table = identity_table(family)
    cmd = ICCID[family][0]
    table[cmd] = [info(HEX_ICCIDS[family][0].decode()), info("8949019237115905560"),
                  b"\r\n+CME ERROR: SIM not inserted\r\n"]
    table[CPIN] = [info("+CPIN: READY"), info("+CPIN: READY"), info("+CPIN: READY"),
                   b"\r\n+CME ERROR: SIM not inserted\r\n"]
    sent, shown = run(make_device, family, table, "driver_reads.identity_faults")
    assert shown["HEX"] == HEX_ICCIDS[family][1]
    assert shown["LUHN"][1] == "iccid: 8949019237115905560 fails its Luhn check"
    assert shown["GONE"][2] == "SIM not inserted"  # the ICCID read refused
    assert shown["NOSIM"][:2] == ["ModemError", "sim: SIM not inserted"]
    assert shown["NOSIM"][3] == "SIM not inserted"
    assert sent[-1] == CPIN, "no identity read without a SIM"


SIGNAL = {
    "sim7080": (
        {b"AT+CPSI?\r": [
            info("+CPSI: LTE CAT-M1,Online,460-00,0x1816,121718281,247,EUTRAN-BAND8,3734,5,5,"
                 "-11,-79,-52,11"),
            info("+CPSI: NO SERVICE,Online")]},
        [b"AT+CSQ\r", b"AT+CPSI?\r"],
        {"act": "LTE-M", "operator": "460-00", "band": 8, "rsrq": -11, "rsrp": -79, "sinr": 11},
    ),
    "sim7600": (
        {b"AT+CPSI?\r": [
            info("+CPSI: LTE,Online,460-00,0x5A1E,187214673,257,EUTRAN-BAND3,1350,5,5,-94,"
                 "-850,-545,15"),
            b"\r\n+CME ERROR: SIM not inserted\r\n"]},
        [b"AT+CSQ\r", b"AT+CPSI?\r"],
        {"act": "LTE", "operator": "460-00", "band": 3, "rsrq": -9.4, "rsrp": -85.0, "sinr": 10},
    ),
    "bg95": (
        {b"AT+QNWINFO\r": [info('+QNWINFO: "eMTC","46000","LTE BAND 3",1650'),
                           info("+QNWINFO: No Service")],
         b"AT+QCSQ\r": [info('+QCSQ: "eMTC",-52,-81,195,-10'), info('+QCSQ: "NOSERVICE"')]},
        [b"AT+CSQ\r", b"AT+QNWINFO\r", b"AT+QCSQ\r"],
        {"act": "LTE-M", "operator": "460-00", "band": 3, "rsrq": -10, "rsrp": -81,
         "sinr": 19.0},
    ),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_signal_with_and_without_service(make_device, family):
    extra, commands, lte = SIGNAL[family]
    table = {b"AT+CSQ\r": [info("+CSQ: 18,99"), info("+CSQ: 99,99")], **extra}
    sent, shown = run(make_device, family, table, "driver_reads.signal_twice")
    assert sent == commands + commands
    got = shown["SERVICE"]
    assert got.pop("rssi_dbm") == -77 and got.pop("ber") is None
    assert got == pytest.approx(lte)
    nothing = dict.fromkeys(["rssi_dbm", "ber", "rsrp", "rsrq", "sinr", "band", "operator",
                             "act"])
    assert shown["NONE"] == nothing


REGISTRATION = {
    # CEREG alone when it shows service; the families with 2G/3G fallback read +CGREG too.
    "sim7080": ({b"AT+CEREG?\r": info('+CEREG: 0,1')}, [b"AT+CEREG?\r"],
                {"stat": 1, "state": "registered_home", "act": None, "source": "CEREG"}),
    "sim7600": ({b"AT+CEREG?\r": info("+CEREG: 0,2"),
                 b"AT+CGREG?\r": info('+CGREG: 2,1,"A1B2","0000C3D4",2')},
                [b"AT+CEREG?\r", b"AT+CGREG?\r"],
                {"stat": 1, "state": "registered_home", "act": "UMTS", "source": "CGREG"}),
    "bg95": ({b"AT+CEREG?\r": info('+CEREG: 2,5,"1A2B","01A2D001",8')}, [b"AT+CEREG?\r"],
             {"stat": 5, "state": "registered_roaming", "act": "LTE-M", "source": "CEREG"}),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_registration_reads_and_urcs(make_device, family):
    table, commands, expected = REGISTRATION[family]
    sent, shown = run(make_device, family, table, "driver_reads.registration_and_urc")
    assert sent == commands * 2  # read twice
    assert {k: shown["REG"][k] for k in expected} == expected
    assert shown["REG"]["registered"] is True
    assert shown["URC_BEFORE"] is False, "a read reply must not pass for a URC"
    # An unchanged registration keeps the status's dict (docs/firmware.md, Heap).
    assert shown["KEPT"] is True
    assert shown["URC"]["state"] == "denied" and shown["URC"]["cause"] == 15
    assert shown["URC_KEPT"] is True


@pytest.mark.parametrize("family", FAMILIES)
def test_set_apn_clears_stale_contexts(make_device, family):
    listing = info('+CGDCONT: 1,"IP","old.apn","0.0.0.0",0,0,0,0',
                   '+CGDCONT: 2,"IP","stale.apn","0.0.0.0",0,0,0,0',
                   '+CGDCONT: 3,"IP","iot.example","0.0.0.0",0,0,0,0')
    settled = info('+CGDCONT: 1,"IP","iot.example","0.0.0.0",0,0,0,0')
    table = {b"AT+CGDCONT?\r": [listing, settled], b"AT+CGDCONT=2\r": OK,
             b'AT+CGDCONT=1,"IP","iot.example"\r': OK, PDP_CONFIG[family]: OK}
    sent, shown = run(make_device, family, table, "driver_reads.set_apn")
    assert sent == [b"AT+CGDCONT?\r", b"AT+CGDCONT=2\r", b'AT+CGDCONT=1,"IP","iot.example"\r',
                    PDP_CONFIG[family],
                    b"AT+CGDCONT?\r", PDP_CONFIG[family]]
    assert shown["BAD"][0] == "ModemError" and "bad APN" in shown["BAD"][1]


CEER = b"AT+CEER\r"
ATTACH = {
    # Each family reads the bearer's address once it is up.
    "sim7080": ({b"AT+CNACT?\r": [info('+CNACT: 0,0,"0.0.0.0"', '+CNACT: 1,0,"0.0.0.0"',
                                       '+CNACT: 2,0,"0.0.0.0"', '+CNACT: 3,0,"0.0.0.0"'),
                                  info('+CNACT: 0,1,"10.185.48.73"', '+CNACT: 1,0,"0.0.0.0"',
                                       '+CNACT: 2,0,"0.0.0.0"', '+CNACT: 3,0,"0.0.0.0"')],
                 b"AT+CNACT=0,1\r": ((1, OK), (800, b"\r\n+APP PDP: 0,ACTIVE\r\n"))},
                [b"AT+CNACT?\r", b"AT+CNACT=0,1\r", b"AT+CNACT?\r"]),
    "sim7600": ({b"AT+NETOPEN?\r": info("+NETOPEN: 0"),
                 b"AT+NETOPEN\r": ((1, OK), (800, b"\r\n+NETOPEN: 0\r\n")),
                 b"AT+IPADDR\r": info("+IPADDR: 10.185.48.73")},
                [b"AT+NETOPEN?\r", b"AT+NETOPEN\r", b"AT+IPADDR\r"]),
    "bg95": ({b"AT+QIACT?\r": [OK, info('+QIACT: 1,1,1,"10.185.48.73"')],
              b"AT+QIACT=1\r": ((800, OK),)},
             [b"AT+QIACT?\r", b"AT+QIACT=1\r", b"AT+QIACT?\r"]),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_attach_brings_the_bearer_up(make_device, family):
    table, commands = ATTACH[family]
    table = {b"AT+CEREG?\r": info("+CEREG: 0,1"), COPS: info('+COPS: 0,0,"MusketNet",7'),
             **table}
    sent, shown = run(make_device, family, table, "driver_bearer.attach")
    assert sent == [b"AT+CEREG?\r", COPS] + commands
    assert shown["UP"] == [True, True, "10.185.48.73", "MusketNet"]


def test_sim7600_attach_takes_already_opened_as_success(make_device):
    table = {b"AT+CEREG?\r": info("+CEREG: 0,5"), COPS: info("+COPS: 0"),
             b"AT+NETOPEN?\r": info("+NETOPEN: 0"),
             b"AT+NETOPEN\r": b"\r\n+IP ERROR: Network is already opened\r\n" + ERROR,
             b"AT+IPADDR\r": info("+IPADDR: 10.0.0.7")}
    sent, shown = run(make_device, "sim7600", table, "driver_bearer.attach_once")
    assert sent == [b"AT+CEREG?\r", COPS, b"AT+NETOPEN?\r", b"AT+NETOPEN\r", b"AT+IPADDR\r"]
    assert shown["UP"] == [True, "10.0.0.7"]


@pytest.mark.parametrize("family", FAMILIES)
def test_attach_refused_on_denied_or_sms_only_networks_and_timeouts(make_device, family):
    activate = ATTACH[family][1][1]
    table = {b"AT+CEREG?\r": [info("+CEREG: 3,3,\"1A2B\",\"01A2D001\",7,0,15"),
                              info("+CEREG: 0,6"), info("+CEREG: 0,1")],
             b"AT+CGREG?\r": info("+CGREG: 0,0"), b"AT\r": OK, COPS: info("+COPS: 0"),
             CEER: [info("+CEER: No suitable cells in tracking area"),
                    info("+CEER: EPS services not allowed"),
                    info("+CEER: No cause information available")],
             **ATTACH[family][0],
             activate: OK if family != "bg95" else b""}  # no result, ever
    sent, shown = run(make_device, family, table, "driver_bearer.attach_refused")
    assert shown["DENIED"][0] == "ModemError"
    assert "denied" in shown["DENIED"][1] and shown["DENIED"][2] == 15
    assert shown["DENIED_CEER"] == "No suitable cells in tracking area"
    assert shown["SMS"][0] == "ModemError" and "SMS only" in shown["SMS"][1]
    assert shown["SMS_CEER"] == "EPS services not allowed"
    kind, message, _, elapsed, bearer = shown["TIMEOUT"]
    assert bearer is False
    if family == "bg95":  # no final result for AT+QIACT=1 in its 150 s
        assert kind == "ATTimeout" and elapsed >= 150000
    else:  # OK, but the bearer's URC never comes
        assert kind == "ModemError" and "no +" in message and elapsed >= 60000
    assert shown["AFTER"]["registered"] is True, "the channel must still work afterwards"
    assert activate in sent




@pytest.mark.parametrize("family", FAMILIES)
def test_socket_open_send_receive_close(make_device, family):
    table, commands, closed_urc = SOCKET[family]
    sent, shown = run(make_device, family, table, "driver_sockets.round_trip", (closed_urc,))
    assert sent == commands + commands[:1]
    assert shown["WROTE"] == 5
    assert shown["READ"] == "world"
    assert shown["EOF"] == [0, True]
    assert shown["LATE"][:2] == ["OSError", errno.ECONNRESET]  # closed by the remote end
    assert shown["AFTER_CLOSE"][:2] == ["OSError", errno.ENOTCONN]
    assert shown["REUSED"] == [True, False], "a link's socket and buffer are made once"


@pytest.mark.parametrize("family", FAMILIES)
def test_socket_open_failures_are_clear(make_device, family):
    table, commands, _ = SOCKET[family]
    opener = commands[0]
    fail = {"sim7080": info("+CAOPEN: 0,20"),
            "sim7600": OK + b"\r\n+CIPOPEN: 0,11\r\n",
            "bg95": OK + b"\r\n+QIOPEN: 0,565\r\n"}[family]
    code = {"sim7080": 20, "sim7600": 11, "bg95": 565}[family]
    sent, shown = run(make_device, family, {opener: [fail, table[opener]]},
                      "driver_sockets.open_failures")
    assert sent == [opener, opener]
    kind, number, message = shown["FAIL"]
    assert (kind, number) == ("OSError", errno.ECONNREFUSED)
    assert "broker.example:1883" in message and str(code) in message
    assert shown["BAD"][:2] == ["OSError", errno.EINVAL]
    assert shown["ALL_HELD"][:2] == ["OSError", errno.ENOBUFS], "one link, made at start"
    assert shown["LINK"] == 0, "a failed open must give its link back"


@pytest.mark.parametrize("family", FAMILIES)
def test_errors_garbage_and_timeouts_end_cleanly(make_device, family):
    cmd = ICCID[family][0]
    replies = [("\r\n%s\r\n" % c["reply"]).encode() for c in CME]
    replies += [b"\r\n\xff\xfe\x80\r\n" + OK, info("+QCCID: NOTANICCID"), ICCID[family][1]]
    table = {cmd: replies, b"AT+CGSN\r": [b"", info("352099001761481")], b"AT\r": OK,
             b"AT+CIMI\r": info("460001234567890"), b"AT+CGMR\r": REVISION[family][0],
             CPIN: info("+CPIN: READY")}
    sent, shown = run(make_device, family, table, "driver_reads.errors_and_timeouts", (len(CME),))
    for i, c in enumerate(CME):
        kind, message, code = shown["E%d" % i]
        assert kind == "ModemError" and code == c["code"]
        assert message.startswith("iccid read: ") and c["reply"] in message
    for i in (len(CME), len(CME) + 1):
        kind, message, _ = shown["E%d" % i]
        assert kind == "ModemError" and message.startswith("iccid: none in reply")
    assert "NOTANICCID" in shown["E%d" % (len(CME) + 1)][1]
    kind, message, _, elapsed = shown["TIMEOUT"]
    assert kind == "ATTimeout" and message.startswith("AT+CGSN")
    assert 5000 <= elapsed < 6000
    assert shown["ID"]["iccid"] == ICCID[family][2]
    # After the timeout the channel proves itself with "AT" before the next command.
    tail = sent[sent.index(b"AT+CGSN\r"):]
    assert tail[:5] == [b"AT+CGSN\r", b"AT\r", CPIN, cmd, b"AT+CGSN\r"]




@pytest.mark.parametrize("family", FAMILIES)
def test_power_on_and_off_through_the_boards_pins(make_device, family):
    table = {b"AT\r": OK, b"ATE0\r": OK, b"AT+CMEE=2\r": OK, b"AT+CIPRXGET=1\r": OK,
             b"AT+CEREG=3\r": OK,
             b"AT+CPOF\r": OK, b"AT+QPOWD\r": OK + b"\r\nPOWERED DOWN\r\n"}
    sent, shown = run(make_device, family, table, "driver_power.power_through_pins")
    from musket.boards import load_board
    timing = load_board(BOARDS[family]).modem
    sync = [b"AT\r", b"ATE0\r", b"AT+CMEE=2\r"] + INIT[family] + [b"AT+CEREG=3\r"]
    pulses, powered, elapsed = shown["ON"]
    assert pulses == [timing.pwrkey_on_ms] and powered is True
    assert elapsed >= timing.pwrkey_on_ms + 2000
    assert shown["AGAIN"] == [timing.pwrkey_on_ms]
    off_pulses, powered, supply = shown["OFF"]
    assert powered is False
    if family == "sim7080":  # no power-down command: PWRKEY
        assert off_pulses == [timing.pwrkey_on_ms, timing.pwrkey_off_ms]
        assert sent == sync + sync
    else:  # AT+CPOF / AT+QPOWD, then STATUS falls
        assert off_pulses == [timing.pwrkey_on_ms]
        assert sent[:2 * len(sync)] == sync + sync
        assert sent[2 * len(sync)] in (b"AT+CPOF\r", b"AT+QPOWD\r")
    if family == "sim7600":  # the A7670 board switches the modem supply and has RESET
        assert supply[0] == 1 and supply[-1] == 0
        assert shown["RESET"] == [2500, 0]


def test_sync_asks_for_registration_urcs_with_the_reject_cause(make_device):
    # AT+CEREG=3 where the modem has it; else location only (AT+CEREG=2).
    table = {b"AT\r": OK, b"ATE0\r": OK, b"AT+CMEE=2\r": OK,
             b"AT+CEREG=3\r": [b"\r\n+CME ERROR: incorrect parameters\r\n", OK],
             b"AT+CEREG=2\r": OK}
    sent, _ = run(make_device, "sim7080", table, "driver_power.sync_twice")
    sync = [b"AT\r", b"ATE0\r", b"AT+CMEE=2\r"]
    assert sent == sync + [b"AT+CEREG=3\r", b"AT+CEREG=2\r"] + sync + [b"AT+CEREG=3\r"]


def test_bg95_send_fail_is_a_clear_error(make_device):
    # SEND FAIL: the modem's send buffer is full. The send ends at once in an OSError that
    # says so; the socket stays usable.
    table = {b'AT+QIOPEN=1,0,"TCP","broker.example",1883,0,0\r': OK + b"\r\n+QIOPEN: 0,0\r\n",
             b"AT+QISEND=0,5\r": b"\r\n> ", b"hello": [b"\r\nSEND FAIL\r\n",
                                                   b"\r\nSEND OK\r\n"], b"AT\r": OK}
    sent, shown = run(make_device, "bg95", table, "driver_sockets.send_fail")
    kind, number, message, elapsed = shown["FAIL"]
    assert (kind, number) == ("OSError", errno.EIO) and "SEND FAIL" in message
    assert elapsed < 100
    assert shown["RETRY"] == 5
    assert sent[1:] == [b"AT+QISEND=0,5\r", b"hello", b"AT+QISEND=0,5\r", b"hello"]


def test_sends_from_two_tasks_each_end_on_their_own_result(make_device):
    # The SIM7600 family confirms a send in a line after OK ("+CIPSEND: <link>,<asked>,
    # <sent>"); the first send's line, 30 ms late, must not answer the second.
    table = {SOCKET["sim7600"][1][0]: SOCKET["sim7600"][0][SOCKET["sim7600"][1][0]],
             b"AT+CIPSEND=0,4\r": b"\r\n>", b"AT+CIPSEND=0,5\r": b"\r\n>",
             b"ack!": ((1, OK), (30, b"\r\n+CIPSEND: 0,4,4\r\n")),
             b"reply": OK + b"\r\n+CIPSEND: 0,5,5\r\n"}
    sent, shown = run(make_device, "sim7600", table, "driver_sockets.two_writers")
    assert shown["WROTE"] == [4, 5]
    assert sent[1:] == [b"AT+CIPSEND=0,4\r", b"ack!", b"AT+CIPSEND=0,5\r", b"reply"]
