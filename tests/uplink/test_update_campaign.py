"""A campaign to 20 virtual devices over a real Mosquitto, with a version that fails its
health check (it cannot start): the canary gets it, rolls it back, and the campaign aborts
after its first stage; the 19 devices outside the canary never receive it, and the registry
says where each device stands."""

from __future__ import annotations

import threading

import pytest
from conftest import SERVICE_PASSWORD, SERVICE_USER, Mosquitto, device_files
from updates import fresh_keys, signed_update, trusting

from musket.ota import campaign, transfer
from musket.registry import Registry
from musket_sim.scenario import load_scenario

FLEET = [f"unit-{i:02d}" for i in range(20)]
INTERPRETER = "cpython"  # twenty devices: the faster interpreter; the canary's path is the same


@pytest.mark.slow
@pytest.mark.parametrize("interpreter", [INTERPRETER])
def test_a_failing_version_aborts_its_campaign_after_the_canary(make_device, tmp_path,
                                                               interpreter):
    creds = {device: f"pw-{device}" for device in FLEET}
    broker = Mosquitto(tmp_path / "broker", {**creds, SERVICE_USER: SERVICE_PASSWORD})
    keys = fresh_keys(tmp_path / "keys")
    bundle = signed_update(keys, tmp_path / "new", INTERPRETER, breaking=True)
    devices = {}
    try:
        for device_id in FLEET:
            devices[device_id] = make_device(
                name=device_id, modem=load_scenario("good"),
                files={**device_files(device_id, broker.port, password=creds[device_id]),
                       **trusting(keys)})
            devices[device_id].run(120)  # its session and subscription, kept by the broker
        with Registry.open(tmp_path / "registry.sqlite", migrate=True) as registry:
            store = campaign.CampaignStore(registry.engine)
            by_stage = campaign.plan(FLEET, ["1", "25%", "100%"])
            assert [len(s) for s in by_stage] == [1, 4, 15]
            store.create("bad-1", "1.1.0", bundle, ["1", "25%", "100%"], 0, by_stage)
            server = transfer.BundleServer("127.0.0.1", broker.port, SERVICE_USER,
                                           SERVICE_PASSWORD)
            outcome: list[str] = []
            changes: list[tuple[str, str]] = []
            runner = threading.Thread(target=lambda: outcome.append(campaign.run(
                store, server, "bad-1", "1.1.0", bundle, by_stage, 0, 60,
                on_change=lambda device, state, reason: changes.append((device, state)))))
            runner.start()
            try:
                canary = devices[by_stage[0][0]]
                canary.run(1800)  # downloads, fails at every boot of the trial, rolls back
                runner.join(60)
            finally:
                server.close()
            assert outcome == ["aborted"], store.get("bad-1")
            for device_id in FLEET[1:]:
                devices[device_id].run(120)
            found = store.get("bad-1")
    finally:
        broker.stop()
    states = {d["device_id"]: d["state"] for d in found["devices"]}
    assert states[by_stage[0][0]] == "rolled_back", found
    # The canary's every state, in turn, though the boot stage's came up together.
    assert changes == [(by_stage[0][0], state) for state in (
        "downloading", "downloaded", "verifying", "staged", "booting", "rolled_back")], changes
    assert {states[d] for d in FLEET[1:]} == {"skipped"}, found
    assert "stage 1: 1 of 1 device(s) failed" in found["reason"], found
    assert set(server.updates) == {by_stage[0][0]}
    for device_id in FLEET[1:]:
        assert "ota: downloading" not in devices[device_id].console_log.read_text()
