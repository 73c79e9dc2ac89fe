"""Campaign plans and the registry's record of them (musket.ota.campaign); a whole campaign
over a broker runs in tests/uplink/test_update_campaign.py."""

from __future__ import annotations

import datetime

import pytest

from musket.ota import campaign, transfer
from musket.registry import Registry
from musket.registry.schema import devices, sims

FLEET = [f"unit-{i:02d}" for i in range(20)]


def test_stages_are_totals_reached_and_the_last_takes_the_rest():
    assert [len(s) for s in campaign.plan(FLEET, ["1", "25%", "100%"])] == [1, 4, 15]
    assert [len(s) for s in campaign.plan(FLEET, ["2", "50%"])] == [2, 18]
    assert campaign.plan(FLEET, ["1", "1", "100%"]) == [FLEET[:1], FLEET[1:]]
    assert campaign.plan(["a", "b", "a"], ["100%"]) == [["a", "b"]]
    assert sum(campaign.plan(FLEET, ["3", "10"]), []) == FLEET


@pytest.mark.parametrize("stages", [["0"], ["-1"], ["x"], ["150%"], ["0%"], []])
def test_a_bad_stage_is_refused(stages):
    with pytest.raises(campaign.CampaignError):
        campaign.plan(FLEET, stages)


@pytest.fixture
def store(tmp_path):
    registry = Registry.open(tmp_path / "reg.sqlite", migrate=True)
    yield campaign.CampaignStore(registry.engine)
    registry.close()


def test_a_campaign_is_recorded_ended_and_refused_twice(store):
    by_stage = campaign.plan(FLEET[:3], ["1", "100%"])
    store.create("c1", "1.1.0", b"bundle", ["1", "100%"], 0, by_stage)
    store.set_device("c1", FLEET[0], "rolled_back", "3 boots without confirming")
    store.finish("c1", "aborted", "stage 1: 1 of 1 device(s) failed")
    found = store.get("c1")
    assert found["state"] == "aborted" and found["stages"] == ["1", "100%"]
    assert [(d["device_id"], d["stage"], d["state"]) for d in found["devices"]] == [
        (FLEET[0], 1, "rolled_back"), (FLEET[1], 2, "skipped"), (FLEET[2], 2, "skipped")]
    with pytest.raises(campaign.CampaignRefused):
        store.create("c1", "1.1.0", b"bundle", ["100%"], 0, [FLEET[:1]])
    with pytest.raises(campaign.CampaignRefused):
        store.get("nope")


def test_a_cohort_is_the_registrys_devices_on_a_board(store):
    now = datetime.datetime.now(datetime.UTC)
    rows = [("unit-b", "esp32-a7670"), ("unit-a", "esp32-sim7080g"),
            ("unit-c", "esp32-sim7080g")]
    with store.engine.begin() as db:
        for i, (device_id, board) in enumerate(rows):
            iccid = f"894901700000000000{i}"
            db.execute(sims.insert().values(iccid=iccid, state="bound", updated=now))
            db.execute(devices.insert().values(
                device_id=device_id, imei=f"86000000000000{i}", iccid=iccid, board=board,
                chip_id=f"240ac400000{i}", created=now))
    assert store.devices_on(["esp32-sim7080g"]) == ["unit-a", "unit-c"]
    assert store.devices_on(["esp32-sim7080g", "esp32-a7670"]) == ["unit-a", "unit-b",
                                                                   "unit-c"]
    assert store.devices_on(["esp32s3-bg95"]) == []
    # Tags add their devices after the boards', each device once (musket.registry.tags).
    from musket.registry import tags
    from musket.registry.records import Actor

    actor = Actor("test-station", "test-operator")
    assert tags.add(store.engine, "Pilot", ["unit-b", "unit-c"], actor) == ["unit-b", "unit-c"]
    assert store.cohort(["unit-c"], ["esp32-sim7080g"], ["pilot"]) == ["unit-c", "unit-a",
                                                                        "unit-b"]
    assert store.cohort([], [], ["pilot", "other"]) == ["unit-b", "unit-c"]


def test_a_device_update_moves_only_forward_through_its_states():
    update = transfer.DeviceUpdate("unit-01", "c1", "1.1.0", b"bundle")
    for state in ("downloading", "downloaded", "verifying", "staged", "verifying", "booting",
                  "upgraded", None, "rejected", "confirmed"):
        update.moved(state, "signature: unknown key" if state == "rejected" else None)
    # A report sent again (verifying) or unknown moves nothing; a final state stays.
    assert update.history == [("offered", None), ("downloading", None), ("downloaded", None),
                              ("verifying", None), ("staged", None), ("booting", None),
                              ("rejected", "signature: unknown key")]
    assert (update.state, update.reason) == ("rejected", "signature: unknown key")
