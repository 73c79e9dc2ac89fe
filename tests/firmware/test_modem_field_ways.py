"""What real modems do, each in the driver that meets it (driverharness.py): an error in
place of the send prompt, a socket the network closes as it opens, Quectel's direct-push
receive, the SIM7000's older bearer forms, and the modem's own restart and SIM URCs."""

from __future__ import annotations

import errno

import pytest
from driverharness import COPS, ERROR, FAMILIES, OK, SOCKET, info, run

# -- what real modems do ------------------------------------------------------------------------

# An error where the ">" prompt was expected (a link the modem no longer has): each family's
# form, and the code the send ends with.
PROMPT_ERRORS = {
    "sim7080": (b"AT+CASEND=0,5\r", b"\r\n+CME ERROR: operation not allowed\r\n",
                "+CME ERROR: operation not allowed"),
    "sim7600": (b"AT+CIPSEND=0,5\r", b"\r\n+CIPERROR: 4\r\n", "+CIPERROR: 4"),
    "bg95": (b"AT+QISEND=0,5\r", ERROR, "ERROR"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_an_error_in_place_of_the_prompt_ends_the_send_at_once(make_device, family):
    table, commands, _ = SOCKET[family]
    send, refusal, words = PROMPT_ERRORS[family]
    table = {commands[0]: table[commands[0]], send: refusal,
             b"AT+CSQ\r": info("+CSQ: 18,99")}
    sent, shown = run(make_device, family, table, "driver_sockets.prompt_error")
    kind, number, message, elapsed = shown["FAIL"]
    assert (kind, number) == ("OSError", errno.EIO)
    assert words in message
    assert elapsed < 100, "no waiting out the send's timeout"
    assert b"hello" not in sent, "no data without the prompt"
    assert sent[1:] == [send, b"AT+CSQ\r"], "and no resync: the channel is in step"
    assert shown["NEXT"] == ["+CSQ: 18,99"]


# The remote end closes the link between the open's reply and the open's return: its URC
# comes right behind the reply.
CLOSED_ON_OPEN = {
    "sim7080": info("+CAOPEN: 0,0") + b"\r\n+CASTATE: 0,0\r\n",
    "sim7600": OK + b"\r\n+CIPOPEN: 0,0\r\n\r\n+IPCLOSE: 0,1\r\n",
    "bg95": OK + b'\r\n+QIOPEN: 0,0\r\n\r\n+QIURC: "closed",0\r\n',
}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_socket_closed_as_it_opens_stays_closed(make_device, family):
    table, commands, _ = SOCKET[family]
    table = {commands[0]: CLOSED_ON_OPEN[family], commands[-1]: table[commands[-1]]}
    sent, shown = run(make_device, family, table, "driver_sockets.closed_on_open")
    assert shown["CLOSED"] is True
    assert shown["READ"] == 0
    assert shown["WRITE"][:2] == ["OSError", errno.ECONNRESET]
    assert sent == [commands[0], commands[-1]], "nothing sent on it; its link given back"


def test_quectel_direct_push_goes_straight_into_the_socket(make_device):
    # "+QIURC: "recv",<id>,<len>" and the bytes, unasked: no AT+QIRD. The data may look like
    # result codes and may come in pieces; a push beyond the receive buffer loses the stream.
    opener = b'AT+QIOPEN=1,0,"TCP","broker.example",1883,0,0\r'
    table = {opener: OK + b"\r\n+QIOPEN: 0,0\r\n", b"AT+CSQ\r": info("+CSQ: 18,99"),
             b"AT+QICLOSE=0\r": OK}
    sent, shown = run(make_device, "bg95", table, "driver_sockets.direct_push")
    assert shown["GOT"] == "hello\r\nOK\r\n\r\nworld"
    assert shown["NEXT"] == ["+CSQ: 18,99"]
    got, kind, number, message = shown["OVERFLOW"]
    assert got == 512 and (kind, number) == ("OSError", errno.EIO), shown
    assert sent == [opener, b"AT+CSQ\r", b"AT+QICLOSE=0\r"]


def test_sim7000_bearer_forms(make_device):
    # A SIM7000 answers the SIM7080's bearer commands in their older form: "+CNACT:
    # <status>,<address>" and "+APP PDP: ACTIVE", both without an index; the driver then
    # switches the bearer with AT+CNACT=1,"<apn>" and AT+CNACT=0.
    table = {b"AT+CGDCONT?\r": info('+CGDCONT: 1,"IP","iot.example","0.0.0.0",0,0,0,0'),
             b'AT+CNCFG=0,1,"iot.example"\r': OK,
             b"AT+CEREG?\r": info("+CEREG: 0,1"), COPS: info('+COPS: 0,0,"MusketNet",7'),
             b"AT+CNACT?\r": [info('+CNACT: 0,"0.0.0.0"'), info('+CNACT: 1,"10.45.6.7"')],
             b'AT+CNACT=1,"iot.example"\r': ((1, OK), (300, b"\r\n+APP PDP: ACTIVE\r\n")),
             b"AT+CNACT=0\r": ((1, OK), (200, b"\r\n+APP PDP: DEACTIVE\r\n"))}
    sent, shown = run(make_device, "sim7080", table, "driver_bearer.sim7000_bearer")
    assert sent == [b"AT+CGDCONT?\r", b'AT+CNCFG=0,1,"iot.example"\r', b"AT+CEREG?\r", COPS,
                    b"AT+CNACT?\r", b'AT+CNACT=1,"iot.example"\r', b"AT+CNACT?\r",
                    b"AT+CNACT=0\r"]
    assert shown["UP"] == [True, "10.45.6.7"]
    assert shown["LOST"] == [False, None, "bearer lost: +APP PDP: DEACTIVE"]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_modems_own_restart_and_sim_urcs_show_in_status(make_device, family):
    # The boot URCs after the driver's own power-on count for nothing; after a quiet spell
    # they mean the modem restarted by itself: bearer and sockets gone, the owner told.
    table, commands, _ = SOCKET[family]
    table = {commands[0]: table[commands[0]], b"AT\r": OK, b"ATE0\r": OK,
             b"AT+CMEE=2\r": OK, b"AT+CIPRXGET=1\r": OK, b"AT+CEREG=3\r": OK}
    boot = {"sim7080": "SMS Ready", "sim7600": "*ATREADY: 1", "bg95": "RDY"}[family]
    sent, shown = run(make_device, family, table, "driver_power.restart_urcs", (boot,))
    assert shown["EXPECTED"] == [0, "RDY", "READY", False]
    assert shown["RESTARTED"] == [1, boot, "NOT READY", False,
                                  "modem restarted by itself: RDY"]
    assert shown["SOCKET"][:2] == ["OSError", errno.ECONNRESET]
