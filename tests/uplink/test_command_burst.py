"""A burst of 200 commands, published within a tenth of a second to a device whose session is
up, packed as the fleet's services send them (musket.batches: up to 24 to a message),
through the real Mosquitto (with the configuration `musket registry export-broker` writes,
with TLS as the default profile has it, and as `--no-tls` writes it) to the whole firmware
under MicroPython at the board's heap: the device
takes them at the pace its memory allows (it reads the next command only when it has room
for it; TCP, the modem's buffer and the broker hold the rest), answers each once, keeps each
reply on flash until the broker has it, and loses no session.

What the burst costs over the air is a figure, not a pass mark: the test prints it (FIGURE
lines) and `bench/uplink_burst.py` runs the test to report it with `make bench`."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import DEVICES, SERVICE_PASSWORD, SERVICE_USER, ExportedBroker, device_files
from device_script import APP, device_script
from test_tls import make_test_pki

from musket.batches import batch_id, pack
from musket.messages import decode_replies
from musket_sim.scenario import load_scenario

BURST = 200
# Virtual seconds per wall second while the burst runs: the device's clock must not race to
# the run's end (an idle device skips to its next timer) before the broker has the burst.
SPEED = 50
RUN_S = 1500  # 25 virtual minutes from the boot that takes the burst
SETTLE_WALL_S = 5  # for the last replies to pass the broker once the device has stopped


def _command(i: int) -> dict:
    # Cheap commands: a config change each, every one with its own id and value.
    return {"id": "b%d" % i, "op": "config", "set": {"report_interval_s": 900 + i}}


def _online(sub) -> int:
    # The device's "online" status messages seen so far: anything but the will's "0".
    return sum(1 for payload in sub.on("d/dev-a/s") if payload != b"0")


def _burst_when_online(sub, online_seen: int, sent: dict, stop: threading.Event) -> None:
    # Waits for the device's next "online" status (its session is up), then publishes the
    # whole burst at QoS 1 without waiting for each PUBACK.
    while not stop.is_set():
        if _online(sub) > online_seen:
            break
        time.sleep(0.002)
    else:
        return
    start = time.monotonic()
    infos = [sub.client.publish("d/dev-a/c", payload, qos=1)
             for payload, _ in sent["messages"]]
    sent["published_s"] = time.monotonic() - start
    for info in infos:
        info.wait_for_publish(10)
    sent["acked_s"] = time.monotonic() - start


@pytest.fixture(params=["plain", "tls"])
def mosquitto(request, tmp_path):
    # The broker as musket configures it (its conftest namesake is a plain test broker): as
    # `--no-tls` writes it, or with TLS (the default profile).
    pki = make_test_pki(tmp_path / "pki") if request.param == "tls" else None
    server = ExportedBroker(tmp_path / "broker", {**DEVICES, SERVICE_USER: SERVICE_PASSWORD},
                            pki=pki)
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("interpreter", ["micropython"])
def test_a_burst_of_commands_is_answered_once_without_losing_the_session(
        make_device, mosquitto, subscriber):
    pki = mosquitto.pki
    sub = subscriber(ca=pki.ca if pki else None)
    files = device_files("dev-a", mosquitto.port, mqtt_tls=1 if pki else 0)
    if pki:
        files["ca.pem"] = pki.ca.read_bytes()
    device = make_device(device_modules=[APP], modem=load_scenario("good"), files=files)
    # The first boot makes the session and its subscription, which the broker keeps.
    first = device.run(300, script=device_script())
    assert _online(sub), first.script_output[-2000:]
    online_seen = _online(sub)
    log_start = len(device.console_log.read_bytes())

    sent: dict = {"messages": pack("dev-a", [_command(i) for i in range(BURST)])}
    stop = threading.Event()
    burst = threading.Thread(target=_burst_when_online, args=(sub, online_seen, sent, stop),
                             daemon=True)
    burst.start()
    try:
        second = device.run(RUN_S, script=device_script(), speed=SPEED)
    finally:
        stop.set()
        burst.join()
    assert "published_s" in sent, "the device's session never came up"

    messages = sent["messages"]
    carried = {ids[0] if len(ids) == 1 else batch_id(ids): ids for _, ids in messages}
    deadline = time.monotonic() + SETTLE_WALL_S
    while time.monotonic() < deadline and len(sub.on("d/dev-a/r")) < len(messages):
        time.sleep(0.05)
    log = device.console_log.read_bytes()[log_start:].decode(errors="replace")
    raw_replies = sub.on("d/dev-a/r")
    by_message: dict = {}
    for payload in raw_replies:
        by_message.setdefault(json.loads(payload).get("id"), []).append(payload)
    by_id: dict = {}
    for message_id, payloads in by_message.items():
        for payload in payloads:
            for reply in decode_replies(payload, carried.get(message_id, [message_id])):
                by_id.setdefault(reply.id, []).append(reply)
    ended = log.count(" W uplink: session ended: ")
    up = sum(boot["air_up"] for boot in second.modem)
    down = sum(boot["air_down"] for boot in second.modem)
    name = "uplink.burst_tls" if pki else "uplink.burst"
    print()
    print("FIGURE %s_air_bytes %d bytes" % (name, up + down))
    print("FIGURE %s_air_bytes_up %d bytes" % (name, up))
    print("FIGURE %s_air_bytes_down %d bytes" % (name, down))
    print("FIGURE %s_ids_answered %d count" % (name, len(by_id)))
    print("FIGURE %s_sessions_ended %d count" % (name, ended))
    print("FIGURE %s_heap_peak %d bytes" % (name, second.heap_peak_bytes or 0))
    print("%s: burst of %d in %d messages: %d replies, %d boot(s), %.0f virtual s, %.1f wall s, "
          "published in %.3f wall s"
          % (name, BURST, len(messages), len(raw_replies), second.boots, second.virtual_seconds,
             second.wall_seconds, sent["published_s"]))

    assert "memory allocation failed" not in log and "MemoryError" not in log, log[-3000:]
    # A reply pushed out of the command record before its PUBACK would be lost to a cut.
    assert "no longer kept on flash" not in log, log[-3000:]
    assert ended == 0, log[-3000:]
    assert second.boots == 1, (second.errors, log[-3000:])
    expected = ["b%d" % i for i in range(BURST)]
    unanswered = sorted(set(expected) - set(by_id))
    assert not unanswered, (len(unanswered), unanswered[:20], log[-3000:])
    assert set(by_id) == set(expected), sorted(set(by_id) - set(expected))
    twice = {cid: rs for cid, rs in by_id.items() if len(rs) != 1}
    assert not twice, twice
    failed = {cid: rs[0] for cid, rs in by_id.items() if not rs[0].ok}
    assert not failed, failed
    # Each ran, in order: the config on flash holds the last one's value.
    config = json.loads(device.read_files()["config.json"][14:])  # after its record header
    assert config["report_interval_s"] == 900 + BURST - 1, config
