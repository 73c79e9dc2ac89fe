"""musket.messages: the status message of contract A (CBOR made by the firmware's encoder, and
JSON), a bare 1 or 0, command replies, and a clear reason for each kind of bad message."""

from __future__ import annotations

import json

import pytest
from fleethelp import status

from musket.broker import BrokerError
from musket.errors import BadInput
from musket.messages import decode_reply, decode_status

FULL = {"t": 1796000000, "fw": "1.4.0", "bc": 12, "rc": "watchdog",
        "rr": {"power-on": 1, "watchdog": 11}, "cr": {"t": 1795990000, "e": "OSError: 110"},
        "up": 3600, "cn": {"s": 3500, "f": 2, "rj": {"33": 1}}, "hp": {"f": 21000, "lb": 912},
        "dx": ["low-signal"], "tx": 123456, "rx": 65432, "dp": 1}


def test_a_full_status_in_cbor_decodes_field_by_field():
    # A healthy device's status (no crash, no diagnosis) stays under the 160 bytes aimed at.
    healthy = {k: v for k, v in FULL.items() if k not in ("cr", "dp")}
    assert len(status(**dict(healthy, dx=[]))) < 160
    s = decode_status(status(**FULL))
    assert s.online and s.firmware == "1.4.0" and s.boot_count == 12
    assert s.reset_cause == "watchdog" and s.reboot_reasons == {"power-on": 1, "watchdog": 11}
    assert (s.crash_time, s.crash) == (1795990000, "OSError: 110")
    assert (s.uptime_s, s.session_s, s.connect_failures) == (3600, 3500, 2)
    assert s.rejects == {"33": 1} and (s.heap_free, s.heap_largest) == (21000, 912)
    assert s.diagnosis == ["low-signal"] and (s.tx, s.rx) == (123456, 65432)
    assert s.data_paused
    assert s.image is None  # no "im": the image flashed on the line
    assert decode_status(status(**dict(FULL, im="1.29.0"))).image == "1.29.0"


def test_the_json_form_and_the_bare_forms():
    s = decode_status(json.dumps({"on": 1, "v": 1, **FULL}).encode())
    assert s.tx == 123456 and s.crash == "OSError: 110"
    assert decode_status(b"1").online and decode_status(b"1").firmware is None
    assert not decode_status(b"0").online
    assert not decode_status(status(on=0)).online
    partial = decode_status(status(fw="1.0"))
    assert partial.boot_count is None and not partial.data_paused  # missing: unknown


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\xa2\x61", "status: undecodable"),  # a map cut short
    (b"[1, 2]", "status: undecodable"),  # JSON text that is not a map, as CBOR garbage
    (status(v=2), "status: schema 2"),
    (status(on=2), "'on' is 2"),
    (status(bc="twelve"), "bc is 'twelve', expected int"),
    (status(bc=-1), "bc is -1, expected 0 or more"),
    (status(rr={"power-on": "x"}), "rr.power-on is 'x'"),
    (status(dx=[1]), r"dx is \[1\], expected a list of strings"),
    (status(hp=[1]), r"hp is \[1\], expected dict"),
    (status(im=129), "im is 129, expected str"),
    (b"\x01", "expected a map, 1 or 0"),
    (b"{" + b" " * 2000 + b"}", "more than a status"),
])
def test_a_bad_status_names_its_fault(payload, reason):
    with pytest.raises(BrokerError, match=reason) as raised:
        decode_status(payload)
    assert isinstance(raised.value, BadInput)


def test_replies():
    r = decode_reply(b'{"id": "7", "ok": true, "result": {"rssi": 20}}')
    assert (r.id, r.ok, r.result, r.error) == ("7", True, {"rssi": 20}, None)
    assert decode_reply(b'{"id": 8, "ok": false, "error": "busy"}').error == "busy"
    for bad, reason in [(b"not json", "not JSON"), (b'{"ok": true}', "expected"),
                        (b'{"id": true, "ok": true}', "not a string or integer"),
                        (b'{"id": 1, "ok": false}', "without an error")]:
        with pytest.raises(BrokerError, match=reason):
            decode_reply(bad)
