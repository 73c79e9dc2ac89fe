"""The swarm's lightweight devices (`musket sim fleet`, sim/swarm.py) against a real Mosquitto:
their telemetry is the firmware's, byte for byte, for the same inputs; and a swarm enrolled in
the registry delivers every count it made, once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from checksuite import import_with_firmware
from conftest import SERVICE_PASSWORD, SERVICE_USER, Mosquitto, Subscriber, device_files
from device_script import APP, device_script

from musket import broker, simfleet
from musket.registry.core import Registry, default_actor
from musket_sim.scenario import load_scenario

HOUR = 3600


@pytest.fixture(scope="module")
def swarm():
    """musket_sim.swarm with the firmware and the plain stand-ins on the path, as its own
    process has them."""
    yield from import_with_firmware("musket_sim.swarm")


def _inputs(swarm, message: broker.Telemetry):
    # The queue items a message was made from, as the device's journal and readings queue hold
    # them: (seq, time, kind, name, delta, total, info) and (rseq, reading record).
    from app.uplink.codec import reading_record

    events = [(e.seq, e.time, e.kind, e.name, e.delta, e.total, e.info) for e in message.events]
    readings = [(r.rseq, reading_record(r.time, r.values)) for r in message.readings]
    return events, readings


@pytest.mark.slow
def test_lightweight_telemetry_is_the_firmware_s_byte_for_byte(make_device, mosquitto,
                                                                subscriber, swarm):
    sub = subscriber(persistent=True)
    device = make_device(device_modules=[APP], modem=load_scenario({}),
                         files=device_files("dev-a", mosquitto.port))
    device.run(8 * HOUR, script=device_script(event_every_s=1500, events_until_s=5 * HOUR))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(sub.on("d/dev-a/e")) < 5:
        time.sleep(0.1)
    with sub.lock:
        sent = [(t, p) for t, p, _ in sub.messages if t in ("d/dev-a/e", "d/dev-a/t")]
    assert len([t for t, _ in sent if t.endswith("/e")]) >= 5, device.console_log.read_text()
    assert any(t.endswith("/t") for t, _ in sent)  # readings alone, after the last event
    for topic_name, payload in sent:
        message = broker.decode_telemetry(payload)
        events, readings = _inputs(swarm, message)
        again = swarm.telemetry("dev-a", message.mseq, message.time, events, readings)
        assert (again[0], bytes(again[1])) == (topic_name, payload), message


@pytest.mark.slow
def test_an_enrolled_swarm_delivers_every_count_once(tmp_path):
    registry = Registry.open(tmp_path / "registry.db", migrate=True)
    devices = simfleet.enroll(registry, 30, tmp_path, default_actor("line-1", "ana"))
    # A second enrollment of the same folder reuses the devices: same ids, nothing new bound.
    assert simfleet.enroll(registry, 30, tmp_path, default_actor()) == devices
    assert len(registry.devices()) == 30
    assert {d.iccid for d in devices} == {r.iccid for r in registry.devices()}
    credentials = {d.id: d.password for d in devices}
    credentials[SERVICE_USER] = SERVICE_PASSWORD
    server = Mosquitto(tmp_path / "broker", credentials)
    sub = Subscriber(server.port, persistent=True)
    try:
        # Ten virtual hours in ten seconds, over two processes.
        result = simfleet.run(devices, [("127.0.0.1", server.port)], run_s=10, speed=3600,
                              processes=2, brews_per_day=48, workdir=tmp_path)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(
                len(sub.on(f"d/{d.id}/e", f"d/{d.id}/t")) for d in devices) < result.acked:
            time.sleep(0.1)
    finally:
        sub.close()
        server.stop()
        registry.close()
    assert result.failures == 0, result.last_error
    assert result.connected_max == 30
    # Each message's PUBACK is a packet its device read: thousands of devices share a swarm
    # process's heap, which must not be collected whole for each of them.
    assert result.full_collections < result.acked / 10, (result.full_collections, result.acked)
    for d in devices:
        stream = broker.DeviceStream()
        for payload in sub.on(f"d/{d.id}/e", f"d/{d.id}/t"):
            stream.add(broker.decode_telemetry(payload))
        made = result.devices[d.id]
        assert stream.gaps == []
        assert stream.last_mseq == made["mseq"]
        delivered = made["events"] - made["unsent_events"]
        # Each event is one brew: its seq and the counter's total go up together.
        assert [(e.seq, e.total) for e in stream.events] == [
            (n, n) for n in range(1, delivered + 1)]
    assert sum(r["brews"] for r in result.devices.values()) > 100  # 30 devices, 10 h, 48/day


def test_sim_fleet_without_a_broker_says_so_with_its_exit_code(tmp_path):
    from click.testing import CliRunner

    from musket.cli import main

    registry = tmp_path / "registry.db"
    Registry.open(registry, migrate=True).close()
    result = CliRunner().invoke(main, [
        "sim", "fleet", "--devices", "3", "--registry", str(registry), "--broker",
        "127.0.0.1:1", "--for", "2s", "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 7, result.output
    assert "no device could connect to the broker" in result.output
    with Registry.open(registry) as reopened:  # enrolled all the same, for the next run
        assert len(reopened.devices()) == 3


def _processes_naming(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if text in args:
            found.append(args.replace("\0", " "))
    return found


def test_an_interrupted_swarm_leaves_no_process_behind(tmp_path):
    devices = [simfleet.SwarmDevice(f"dev-{i}", f"8988211{i:012d}", "pw") for i in range(4)]
    calls = []

    def interrupt(connected, acked):
        calls.append(connected)
        if len(_processes_naming(str(tmp_path / "swarm-"))) == 2:
            raise KeyboardInterrupt  # as Ctrl-C does, while both processes run

    # No broker at port 1: the devices keep trying for the ten minutes they were given.
    with pytest.raises(KeyboardInterrupt):
        simfleet.run(devices, [("127.0.0.1", 1)], run_s=600, processes=2, workdir=tmp_path,
                     progress=interrupt)
    assert calls, "the run reported no progress"
    assert _processes_naming(str(tmp_path / "swarm-")) == []
