"""An update from the fleet to a device over a real Mosquitto: the bundle is offered with an
"ota" command, the device pulls it chunk by chunk over its uplink (musket.ota.transfer serves
them), installs it at its next boot, and reports the outcome; a chunk that arrived is never
asked for again."""

from __future__ import annotations

import pytest
from conftest import SERVICE_PASSWORD, SERVICE_USER, device_files
from updates import BOARD, UPDATED, boot_lines, marked_firmware, state_of

from musket.ota import release, transfer
from musket.ota.keys import KeyStore
from musket_sim.device import INTERPRETERS
from musket_sim.scenario import load_scenario


@pytest.fixture
def update(tmp_path_factory, interpreter):
    keys = KeyStore(tmp_path_factory.mktemp("keys"))
    keys.generate()
    new = marked_firmware(tmp_path_factory.mktemp("new"))
    made = release.build_release(keys, version="1.1.0", boards=[BOARD], firmware_root=new,
                                 interpreter=interpreter)
    return keys, made.data


def trusting(keys: KeyStore) -> dict[str, bytes]:
    import json

    return {"ota/keys.json": json.dumps([k.public_key.hex() for k in keys.trusted()]).encode()}


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_an_offered_update_is_pulled_installed_and_confirmed(make_device, mosquitto, update,
                                                             interpreter):
    keys, bundle = update
    device = make_device(files={**device_files("dev-a", mosquitto.port), **trusting(keys)},
                         modem=load_scenario("good"))
    device.run(300)  # the device's session and subscription, kept by the broker
    server = transfer.BundleServer("127.0.0.1", mosquitto.port, SERVICE_USER, SERVICE_PASSWORD)
    try:
        server.offer("dev-a", "c1", "1.1.0", bundle)
        result = device.run(1800)
        assert server.wait(["dev-a"], ("confirmed",), 10), server.updates["dev-a"]
    finally:
        server.close()
    assert not result.errors, result.errors
    served = server.updates["dev-a"]
    assert served.state == "confirmed", served.reports
    assert [r["state"] for r in served.reports] == ["downloaded", "confirmed"], served.reports
    assert served.resent_chunks == 0, served.served
    assert served.bytes_served == len(bundle)
    assert UPDATED in boot_lines(device)[-1]
    state = state_of(device)
    assert state["version"] == "1.1.0" and state["last"]["campaign"] == "c1", state
