"""musket.broker against the real Mosquitto: hashes it accepts, an ACL that confines each
device to its own prefix, and the telemetry decoder."""

from __future__ import annotations

import time

import cbor2
import pytest
from conftest import DEVICES, Subscriber

from musket import broker


def test_password_hash_is_mosquittos_format_and_verifies():
    encoded = broker.hash_password("secret", salt=bytes(12))
    assert encoded.startswith("$7$101$AAAAAAAAAAAAAAAA$")
    assert broker.verify_password("secret", encoded)
    assert not broker.verify_password("Secret", encoded)
    with pytest.raises(broker.BrokerError):
        broker.verify_password("secret", "$6$abc")


def test_a_device_cannot_reach_another_devices_prefix(mosquitto, subscriber):
    service = subscriber()
    a = Subscriber(mosquitto.port, user="dev-a", password=DEVICES["dev-a"],
                   topics=("d/dev-b/c", "d/dev-a/c"))
    try:
        a.publish("d/dev-b/t", b"forged")
        a.publish("d/dev-a/t", b"own")
        service.publish("d/dev-b/c", b'{"id": "x1", "op": "status"}')
        service.publish("d/dev-a/c", b'{"id": "x2", "op": "status"}')
        deadline = time.monotonic() + 5
        # Each client's messages arrive in order: once the later ones are in, the earlier
        # ones would have been.
        while time.monotonic() < deadline and not (service.on("d/dev-a/t")
                                                   and a.on("d/dev-a/c")):
            time.sleep(0.05)
        assert a.on("d/dev-a/c") == [b'{"id": "x2", "op": "status"}']
        assert service.on("d/dev-a/t") == [b"own"]
        assert service.on("d/dev-b/t") == []  # the broker dropped A's publish under B
        assert a.on("d/dev-b/c") == []
    finally:
        a.close()


def test_wrong_password_is_refused(mosquitto):
    with pytest.raises(RuntimeError):
        Subscriber(mosquitto.port, user="dev-a", password="wrong")


def test_acl_text_names_only_the_devices_own_topics():
    text = broker.render_acl(["dev-a"], ["fleet"])
    assert "user dev-a\ntopic write d/dev-a/t" in text
    assert "topic read d/dev-a/c" in text and "dev-b" not in text
    with pytest.raises(broker.BrokerError):
        broker.render_acl(["../x"])


def test_decoder_reads_cbor_and_json_forms():
    raw = cbor2.dumps([1, 7, 1000, [[5, 3, 0, "brews", 1, 42]], [9, [0, {"t": 21.5}]]])
    msg = broker.decode_telemetry(raw)
    assert msg.mseq == 7 and msg.events[0] == broker.Event(5, 1003, "use", "brews", 1, 42)
    assert msg.readings == [broker.Reading(9, 1000, {"t": 21.5})]
    js = b'{"v":1,"n":7,"t":1000,"e":[[5,3,0,"brews",1,42]],"r":[9,[0,{"t":21.5}]]}'
    assert broker.decode_telemetry(js) == msg
    for bad in (b"\xff\x00", cbor2.dumps([2, 1, 0, [], []]), b'{"v":1}'):
        with pytest.raises(broker.BrokerError):
            broker.decode_telemetry(bad)
