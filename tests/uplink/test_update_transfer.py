"""An update from the fleet to a device over a real Mosquitto: the bundle is offered with an
"ota" command, the device pulls it chunk by chunk over its uplink (musket.ota.transfer serves
them), installs it at its next boot, and reports the outcome; a chunk that arrived is never
asked for again."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SERVICE_PASSWORD, SERVICE_USER, device_files, serve_update
from updates import (
    UPDATED,
    boot_lines,
    delta_update,
    fresh_keys,
    signed_update,
    state_of,
    trusting,
)

from musket.ota import transfer
from musket_sim.device import INTERPRETERS
from musket_sim.scenario import load_scenario


@pytest.fixture
def update(tmp_path_factory, interpreter):
    keys = fresh_keys(tmp_path_factory.mktemp("keys"))
    return keys, signed_update(keys, tmp_path_factory.mktemp("new"), interpreter)



@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_an_offered_update_is_pulled_installed_and_confirmed(make_device, mosquitto, update,
                                                             subscriber, interpreter):
    from musket.messages import decode_status

    keys, bundle = update
    sub = subscriber()
    device = make_device(files={**device_files("dev-a", mosquitto.port), **trusting(keys)},
                         modem=load_scenario("good"))
    device.run(300)  # the device's session and subscription, kept by the broker
    result, served = serve_update(device, mosquitto.port, "c1", "1.1.0", bundle, "confirmed")
    assert not result.errors, result.errors
    assert served.state == "confirmed", served.reports
    # The boot stage's steps came up from the next boots, each once, then the outcome.
    assert [r["state"] for r in served.reports] == [
        "downloaded", "verifying", "staged", "booting", "confirmed"], served.reports
    assert {r["v"] for r in served.reports} == {"1.1.0"}, served.reports
    assert [s for s, _ in served.history] == ["offered", "downloading", *transfer.STATES[2:7]]
    assert "phases" not in state_of(device), state_of(device)  # each marked as sent
    assert "E app: task" not in device.console_log.read_text()  # no part failed for heap
    assert served.resent_chunks == 0, served.served
    assert served.bytes_served == len(bundle)
    assert UPDATED in boot_lines(device)[-1]
    state = state_of(device)
    assert state["version"] == "1.1.0" and state["last"]["campaign"] == "c1", state
    # The status the trial's session began with named the old version; the one sent behind
    # the confirmed report names the new one.
    statuses = [decode_status(p) for p in sub.on("d/dev-a/s") if p != b"0"]
    assert statuses and statuses[-1].firmware == "1.1.0", [s.firmware for s in statuses]
    assert "0.0.0" in [s.firmware for s in statuses[:-1]]


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_bundle_the_device_refuses_is_reported_verifying_then_rejected_with_why(
        make_device, mosquitto, tmp_path, interpreter):
    stranger = fresh_keys(tmp_path / "stranger")
    bundle = delta_update(stranger, tmp_path / "new", interpreter)
    device = make_device(files={**device_files("dev-a", mosquitto.port),
                                **trusting(fresh_keys(tmp_path / "keys"))},
                         modem=load_scenario("good"))
    device.run(300)
    result, served = serve_update(device, mosquitto.port, "c5", "1.1.0", bundle, "rejected",
                                  900)
    assert not result.errors, result.errors
    assert [r["state"] for r in served.reports] == ["downloaded", "verifying", "rejected"]
    assert served.state == "rejected" and "signature" in served.reason, served.reports
    assert UPDATED not in boot_lines(device)[-1]
    assert "phases" not in state_of(device) and state_of(device)["last"]["reported"]


@pytest.mark.parametrize("interpreter", ["micropython"])
def test_musket_ota_send_rolls_an_update_out_to_a_device(make_device, mosquitto, update,
                                                         tmp_path, interpreter):
    keys, bundle = update
    device = make_device(files={**device_files("dev-a", mosquitto.port), **trusting(keys)},
                         modem=load_scenario("good"))
    device.run(300)
    bundle_file = tmp_path / "app-1.1.0.mkot"
    bundle_file.write_bytes(bundle)
    musket = str(Path(sys.executable).with_name("musket"))
    sender = subprocess.Popen(
        [musket, "ota", "send", str(bundle_file), "--device", "dev-a", "--campaign", "c2",
         "--broker", f"127.0.0.1:{mosquitto.port}", "--user", SERVICE_USER,
         "--keys", str(keys.folder), "--timeout", "60", "--json"],
        env={**os.environ, "MUSKET_MQTT_PASSWORD": SERVICE_PASSWORD},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # the offer is on the broker before the device's next session
        device.run(1800)
        out, err = sender.communicate(timeout=90)
    finally:
        sender.kill()
    assert sender.returncode == 0, out + err
    report = json.loads(out)
    assert report["devices"] == [{"device": "dev-a", "state": "confirmed", "reason": None,
                                  "bytes_served": len(bundle), "resent_chunks": 0}], report
    assert SERVICE_PASSWORD not in out + err


def test_musket_ota_send_without_a_broker_is_one_line(update, tmp_path, monkeypatch):
    keys, bundle = update
    bundle_file = tmp_path / "b.mkot"
    bundle_file.write_bytes(bundle)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = s.getsockname()[1]
    done = subprocess.run(
        [str(Path(sys.executable).with_name("musket")), "ota", "send", str(bundle_file),
         "--device", "dev-a", "--campaign", "c3", "--broker", f"127.0.0.1:{nobody}",
         "--user", SERVICE_USER, "--keys", str(keys.folder)],
        env={**os.environ, "MUSKET_MQTT_PASSWORD": "secret"}, capture_output=True, text=True)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "cannot reach the broker" in done.stderr
    assert done.stderr.count("\n") <= 2, done.stderr


@pytest.mark.parametrize("interpreter", ["micropython"])
def test_a_download_resumes_after_link_drops_and_a_reboot(make_device, mosquitto, update,
                                                         interpreter):
    keys, bundle = update
    # The network ends the data session three times while the bundle comes (from about
    # 312 s), and the second run ends mid-download: the next boots from power-on.
    drops = {"events": [{"at": at, "drop_data": True} for at in (325, 345, 365)]}
    device = make_device(files={**device_files("dev-a", mosquitto.port), **trusting(keys)},
                         modem=load_scenario(drops))
    device.run(300)
    server = transfer.BundleServer("127.0.0.1", mosquitto.port, SERVICE_USER, SERVICE_PASSWORD)
    try:
        server.offer("dev-a", "c4", "1.1.0", bundle)
        cut_short = device.run(90)
        held = server.updates["dev-a"].bytes_served
        assert 0 < held < len(bundle), held  # the run ended mid-download
        device.run(1800)
        assert server.wait(["dev-a"], ("confirmed",), 10), server.updates["dev-a"]
    finally:
        server.close()
    log = device.console_log.read_text()
    assert log.count("uplink: session ended") >= 3, log[-3000:]
    served = server.updates["dev-a"]
    assert served.state == "confirmed", served.reports
    # A chunk goes again only when the one asked for was lost with the link (at most one per
    # interruption); everything that arrived was kept.
    assert served.resent_chunks <= 4, served.served
    assert set(served.served) == set(range(0, len(bundle), transfer.CHUNK_MAX))
    assert not cut_short.errors, cut_short.errors
