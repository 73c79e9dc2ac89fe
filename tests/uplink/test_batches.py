"""Command batches: the device's side under both interpreters over the uplink's fake transport
(checks/batch_checks.py: each command run once and answered in the batch's one reply, a batch
larger than the receive buffer read a line at a time, a repeat answered from the record, a
batch cut mid-way going on after what it answered, refusals beyond the limits, a step whose
write fails for memory tried again without answering twice), and the host's
packing and reply decoding (musket.batches, musket.messages.decode_replies), whose limits are
the firmware's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from checksuite import Suite, on_device

from musket import batches
from musket.broker import BrokerError, command_payload_max
from musket.messages import decode_replies

CHECKS = Path(__file__).parent / "checks" / "batch_checks.py"
HELPERS = [Path(__file__).parent / "checks" / "uplink_checks.py"]
SUITE = Suite(CHECKS, on_device(CHECKS, 3600, helpers=HELPERS))

test_batch_unit, test_batch_unit_run_is_clean = SUITE.tests()

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware" / "app" / "uplink" / "batch.py"


def config(cid: str, value: int) -> dict:
    return {"id": cid, "op": "config", "set": {"report_interval_s": value}}


def test_the_limits_are_the_firmwares():
    source = FIRMWARE.read_text()
    assert re.search(r"^BATCH_MAX = const\(%d\)" % batches.BATCH_MAX, source, re.M)
    assert re.search(r"^BATCH_BYTES = const\(%d\)" % batches.BATCH_BYTES, source, re.M)
    assert 'BATCHED = ("config", "counter", "reboot")' in source
    assert batches.BATCHED_OPS == ("config", "counter", "reboot")


def test_pack_fills_messages_up_to_the_limits_in_order():
    commands = [config("c%d" % i, 900 + i) for i in range(60)]
    messages = batches.pack("dev-a", commands)
    ids = [cid for _, carried in messages for cid in carried]
    assert ids == ["c%d" % i for i in range(60)]
    for payload, carried in messages:
        assert len(payload) <= batches.BATCH_BYTES
        assert len(carried) <= batches.BATCH_MAX
        assert batches.commands_in(payload) == [c for c in commands if c["id"] in carried]
        head = json.loads(payload.split(b"\n")[0])
        assert head == {"id": batches.batch_id(carried), "op": "batch", "n": len(carried)}
    # Each message but the last is full: the next command would not fit it.
    assert [len(carried) for _, carried in messages] == [21, 20, 19]
    for (_, carried), (_, following) in zip(messages, messages[1:], strict=False):
        lines = [batches.compact(c) for c in commands if c["id"] in carried + following[:1]]
        assert len(batches.batch_payload(lines, carried + following[:1])) > batches.BATCH_BYTES
    # The same commands make the same batches: the device answers a repeat from its record.
    assert batches.pack("dev-a", commands) == messages


def test_pack_sends_status_ota_and_lone_commands_alone():
    commands = [config("a", 900), {"id": "s", "op": "status"}, config("b", 901),
                config("c", 902), {"id": "o", "op": "ota", "offer": {}}, config("d", 903)]
    messages = batches.pack("dev-a", commands)
    assert [carried for _, carried in messages] == [["a"], ["s"], ["b", "c"], ["o"], ["d"]]
    assert messages[0][0] == b'{"id":"a","op":"config","set":{"report_interval_s":900}}'
    assert batches.pack("dev-a", []) == []


def test_pack_counts_and_sizes():
    short = [{"id": "r%d" % i, "op": "reboot"} for i in range(batches.BATCH_MAX + 1)]
    assert [len(c) for _, c in batches.pack("dev-a", short)] == [batches.BATCH_MAX, 1]
    limit = command_payload_max("dev-a")
    pad = {"id": "x", "op": "config", "set": {"log_level": ""}}
    big = {**pad, "set": {"log_level": "y" * (limit - len(batches.compact(pad)))}}
    assert len(batches.compact(big)) == limit
    assert len(batches.pack("dev-a", [big] * 5)) == 2  # four of these fill a batch
    with pytest.raises(BrokerError, match="the device takes at most"):
        batches.pack("dev-a", [{**big, "id": "xx"}])
    with pytest.raises(BrokerError, match="without a string id"):
        batches.pack("dev-a", [{"op": "reboot"}])


def test_decode_replies_gives_one_reply_per_command():
    ids = ["c0", "c1", "c2", "c3"]
    payload = json.dumps({"id": batches.batch_id(ids), "ok": True, "n": 4, "r": [
        [1, False, "report_interval_s: value 5 is below the minimum 60"],
        [2, True, {"service_rules": "brews/50:x"}], [3, False]]}).encode()
    replies = decode_replies(payload, ids)
    assert [(r.id, r.ok) for r in replies] == [("c0", True), ("c1", False), ("c2", True),
                                                ("c3", False)]
    assert replies[1].error == "report_interval_s: value 5 is below the minimum 60"
    assert replies[2].result == {"after_reboot": {"service_rules": "brews/50:x"}}
    assert "did not fit" in replies[3].error
    stopped = json.dumps({"id": "B", "ok": False, "error": "more than 24 commands", "n": 2}
                         ).encode()
    assert [(r.ok, r.error) for r in decode_replies(stopped, ids)][1:] == [
        (True, None), (False, "not run: more than 24 commands"),
        (False, "not run: more than 24 commands")]
    refused = b'{"id":"B","ok":false,"error":"too large: 2000 bytes"}'
    assert {r.error for r in decode_replies(refused, ids)} == {"too large: 2000 bytes"}
    alone = decode_replies(b'{"id":"c0","ok":true,"result":{"seq":3}}', ["c0"])
    assert alone[0].result == {"seq": 3}
    for bad in (b'{"id":"B","ok":true,"n":"2"}', b'{"id":"B","ok":true,"n":2,"r":[["1"]]}',
                b'{"id":"B","ok":true,"n":2,"r":[[0,"yes"]]}', b"[1]"):
        with pytest.raises(BrokerError):
            decode_replies(bad, ids)


def test_commands_in_refuses_what_is_not_commands():
    with pytest.raises(BrokerError, match="not JSON lines"):
        batches.commands_in(b'{"id":"B","op":"batch"}\nnot json')
