"""The broker configuration musket exports (`musket registry export-broker --conf`, rendered by
musket.broker.MosquittoConf), run by the real Mosquitto and tried as an attacker would: a TLS
listener that takes only clients trusting the CA; a device that borrows another's client id
neither knocks it off nor wipes its session; a packet larger than the devices send or take
is refused at the broker, before it could cross a device's paid link. The limits derive from
the device's buffers, read here from the firmware itself.

The clients are paho-mqtt, driven by hand (no thread, no automatic reconnect), so that each
CONNACK and each connection the broker drops is seen; the last test is the whole firmware."""

from __future__ import annotations

import json
import re
import ssl
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from conftest import (
    DEVICES,
    SERVICE_PASSWORD,
    SERVICE_USER,
    ExportedBroker,
    device_files,
)
from device_script import APP, device_script
from test_tls import TlsFiles, make_test_pki

from musket import broker
from musket.batches import batch_id, pack
from musket.cli import main
from musket.errors import ExitCode
from musket.registry import Actor, Registry, binding
from musket_sim.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware" / "app"
# The longest id musket allows: its command topic is the longest, so its commands the shortest.
LONGEST_ID = "x" * broker.DEVICE_ID_MAX
# A second copy of the fleet service: the client id is the user name, so each copy has its own.
SERVICE_USER_2 = "fleet-2"
CREDENTIALS = {**DEVICES, LONGEST_ID: "pw-long-3Rt8", SERVICE_USER: SERVICE_PASSWORD,
               SERVICE_USER_2: "fleet-2-pass-for-tests"}
SERVICE_USERS = (SERVICE_USER, SERVICE_USER_2)
WAIT_S = 5


def firmware_constant(path: Path, name: str) -> int:
    match = re.search(rf"^{name} = const\((\d+)\)", path.read_text(), re.M)
    assert match, f"{name} not found in {path}"
    return int(match.group(1))


@pytest.fixture
def pki(tmp_path) -> TlsFiles:
    return make_test_pki(tmp_path / "pki")


@pytest.fixture
def hardened(tmp_path, pki):
    server = ExportedBroker(tmp_path / "broker", CREDENTIALS, SERVICE_USERS, pki)
    yield server
    server.stop()


class Client:
    """One paho-mqtt client; `pump` runs its network loop (and others') until a condition."""

    def __init__(self, port: int, user: str, client_id: str | None = None, *,
                 clean: bool = True, ca: Path | None = None, topics: tuple[str, ...] = (),
                 password: str | None = None) -> None:
        self.closing = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or user,
                                  protocol=mqtt.MQTTv311, clean_session=clean)
        self.client.username_pw_set(user, CREDENTIALS[user] if password is None else password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.connacks: list[tuple[bool, int]] = []  # (session present, return code)
        self.dropped = 0  # connections that ended without our DISCONNECT
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = False
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, msg: self.messages.append(
            (msg.topic, bytes(msg.payload)))
        self.client.on_subscribe = lambda c, u, mid, codes, p: setattr(self, "subscribed", True)
        self.topics = topics
        self.client.connect("127.0.0.1", port, keepalive=30)
        pump([self], lambda: self.connacks or self.dropped)
        assert self.connacks, "no CONNACK"
        if topics and self.connacks[-1][1] == 0:
            self.client.subscribe([(t, 1) for t in topics])
            assert pump([self], lambda: self.subscribed), "no SUBACK"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connacks.append((bool(flags.session_present), int(reason_code.value)))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self.closing:
            self.dropped += 1

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        self.closing = True
        if self.client.is_connected():
            self.client.disconnect()
            self.client.loop(0.1)


def pump(clients: list[Client], until, timeout: float = WAIT_S) -> bool:
    """Runs the clients' loops until `until()` is true (True) or the timeout (False)."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            return False
        for c in clients:
            c.client.loop(0.02)
    return True


# -- the numbers ----------------------------------------------------------------------------


def test_the_limits_follow_the_firmwares_buffers_and_docs():
    service = FIRMWARE / "uplink" / "service.py"
    assert broker.DEVICE_RX_SIZE == firmware_constant(service, "_RX_SIZE"), (
        "the device's receive buffer changed: update musket.broker.DEVICE_RX_SIZE and the "
        "command limit in docs/uplink.md")
    assert broker.DEVICE_TX_SIZE == firmware_constant(service, "_TX_SIZE")
    assert broker.DEVICE_REPLIES_KEPT == firmware_constant(
        FIRMWARE / "uplink" / "commands.py", "_REPLIES_KEPT")
    assert broker.COMMANDS_IN_FLIGHT < broker.DEVICE_REPLIES_KEPT
    assert re.search(r'"device_id": \("", str, 0, %d,' % broker.DEVICE_ID_MAX,
                     (FIRMWARE / "config.py").read_text())
    assert 'return "d/%s/%s" % (device_id, leaf)' in (FIRMWARE / "uplink" / "__init__.py"
                                                      ).read_text()
    # A command at QoS 1 for the longest id: 2 + 68 (d/<64>/c) + 2 (packet id) + payload.
    assert broker.COMMAND_PAYLOAD_MAX == 248
    assert broker.command_payload_max(LONGEST_ID, qos=0) == 250
    assert broker.command_payload_max("msk-7k3qx9ta") == 300  # provisioning's ids
    assert broker.publish_body_size(broker.topic(LONGEST_ID, "c"), 248) == 320
    assert broker.publish_packet_size(broker.topic(LONGEST_ID, "c"), 248) == 323
    # Mosquitto counts 1 + body: the device's largest packet (448 bytes, a body of 445) is
    # smaller than the largest batch of commands for the longest id (2 + 68 + 2 + 1280).
    assert broker.DEVICE_BATCH_BYTES == firmware_constant(FIRMWARE / "uplink" / "batch.py",
                                                          "BATCH_BYTES")
    assert (broker.DEVICE_TX_BODY_MAX, broker.MAX_PACKET_SIZE) == (445, 1353)
    broker.check_command_size(LONGEST_ID, b"x" * 248)
    with pytest.raises(broker.BrokerError, match="249 bytes for x+: the device takes at most "
                                                 "248"):
        broker.check_command_size(LONGEST_ID, b"x" * 249)
    doc = (REPO / "docs" / "uplink.md").read_text()
    assert f"{broker.COMMAND_PAYLOAD_MAX} bytes" in doc.split("## Commands")[1]
    assert f"`max_packet_size {broker.MAX_PACKET_SIZE}`" in doc
    assert f"`max_inflight_messages {broker.COMMANDS_IN_FLIGHT}`" in doc


def test_export_broker_writes_the_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSKET_REGISTRY", str(tmp_path / "reg.sqlite"))
    monkeypatch.chdir(tmp_path)
    with Registry.open(tmp_path / "reg.sqlite", migrate=True) as registry:
        registry.import_sims(_sims_csv(tmp_path), Actor("line-1", "ana"))
        with registry.transaction() as conn:
            unit = binding.Unit("8949019237115905561", "869715053990670", None,
                                "240ac4000001", "esp32-sim7080g")
            plan = binding.plan(conn, unit, allow_unknown_sim=True)
            binding.apply(conn, plan, unit, Actor("line-1", "ana"),
                          new_credentials=binding.Credentials(broker.hash_password("s"),
                                                              "cd" * 32))
    run = CliRunner().invoke
    out = run(main, ["registry", "export-broker", "--passwd", "passwd", "--acl", "acl",
                     "--conf", "musket.conf", "--certfile", "certs/server.pem"])
    assert out.exit_code == 0, out.output
    assert out.output == "1 device: passwd, acl, musket.conf\n"
    conf = (tmp_path / "musket.conf").read_text()
    assert conf == broker.MosquittoConf(
        str(tmp_path / "passwd"), str(tmp_path / "acl"),
        certfile=str(tmp_path / "certs" / "server.pem")).render()
    assert "\nlistener 8883\n" in conf and "\nuse_username_as_clientid true\n" in conf
    assert "\nmax_inflight_messages 1\n" in conf
    plain = run(main, ["registry", "export-broker", "--passwd", "passwd", "--acl", "acl",
                       "--conf", "plain.conf", "--no-tls"])
    assert plain.exit_code == 0, plain.output
    text = (tmp_path / "plain.conf").read_text()
    assert "\nlistener 1883\n" in text and "certfile" not in text and "in clear" in text
    # Options of the configuration without --conf, or a listener port out of range: refused.
    out = run(main, ["registry", "export-broker", "--passwd", "p2", "--acl", "a2",
                     "--port", "8884"])
    assert out.exit_code == ExitCode.BAD_INPUT
    assert out.output.startswith("error: --port without --conf"), out.output
    assert not (tmp_path / "p2").exists()
    with pytest.raises(broker.BrokerError, match="absolute path"):
        broker.MosquittoConf("passwd", "/etc/acl")


def _sims_csv(tmp_path: Path) -> Path:
    path = tmp_path / "sims.csv"
    path.write_text("ICCID,plan,state\n8949019237115905561,iot-eu,inventory\n")
    return path


# -- TLS ------------------------------------------------------------------------------------


def test_the_tls_listener_takes_only_clients_that_trust_the_ca(hardened, pki):
    good = Client(hardened.port, SERVICE_USER, ca=pki.ca)
    assert good.connacks == [(False, 0)]
    good.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(hardened.port, SERVICE_USER, ca=pki.other_ca)
    # MQTT in clear on the TLS port: no CONNACK ever comes.
    with pytest.raises(AssertionError, match="no CONNACK"):
        Client(hardened.port, SERVICE_USER)
    # TLS 1.2 (the oldest the listener takes) is enough: mbedTLS builds without 1.3 connect.
    old = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="x", protocol=mqtt.MQTTv311)
    old.username_pw_set(SERVICE_USER, SERVICE_PASSWORD)
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    old.tls_set_context(context)
    codes = []
    old.on_connect = lambda c, u, f, rc, p: codes.append(int(rc.value))
    old.connect("127.0.0.1", hardened.port, keepalive=30)
    deadline = time.monotonic() + WAIT_S
    while not codes and time.monotonic() < deadline:
        old.loop(0.02)
    assert codes == [0]
    assert isinstance(old.socket(), ssl.SSLSocket) and old.socket().version() == "TLSv1.2"
    old.disconnect()


# -- client ids -------------------------------------------------------------------------------


def borrow_a_client_id(port: int, ca: Path | None) -> dict:
    """dev-b keeps a persistent session with a queued command; dev-a, with its own password,
    connects under dev-b's client id (clean session), first while dev-b is online, then while
    it is away. Returns what dev-b saw."""
    service = Client(port, SERVICE_USER, ca=ca)
    victim = Client(port, "dev-b", clean=False, ca=ca, topics=("d/dev-b/c",))
    attacker = Client(port, "dev-a", client_id="dev-b", ca=ca)
    # Given time to be knocked off, if it can be.
    pump([service, victim, attacker], lambda: victim.dropped, timeout=1)
    knocked_off = victim.dropped > 0 or not victim.connected
    attacker.close()
    victim.close()
    info = service.publish("d/dev-b/c", b'{"id": "q1", "op": "status"}')
    assert pump([service], info.is_published)
    attacker = Client(port, "dev-a", client_id="dev-b", ca=ca)  # while dev-b is away
    pump([attacker], lambda: False, timeout=0.3)
    attacker.close()
    back = Client(port, "dev-b", clean=False, ca=ca)  # no new SUBSCRIBE: the session has it
    pump([back], lambda: back.messages, timeout=1)  # on loopback, a queued one comes at once
    back.close()
    service.close()
    return {"knocked_off": knocked_off, "session_kept": back.connacks[0][0],
            "queued": back.messages}


def test_a_device_cannot_take_another_devices_client_id(hardened, pki):
    seen = borrow_a_client_id(hardened.port, pki.ca)
    assert seen == {"knocked_off": False, "session_kept": True,
                    "queued": [("d/dev-b/c", b'{"id": "q1", "op": "status"}')]}
    # Under its own name the borrower got nothing of dev-b's, as the broker logged it.
    assert re.search(r"New client connected .* as dev-a ", hardened.log())


def test_without_the_exported_configuration_the_attack_works(mosquitto):
    # The same attack on the tests' ordinary broker (ids not bound to user names) is why
    # the exported configuration binds them: dev-b is knocked off and loses its session.
    seen = borrow_a_client_id(mosquitto.port, None)
    assert seen == {"knocked_off": True, "session_kept": False, "queued": []}


# -- packet sizes -----------------------------------------------------------------------------


def payload_for_packet(topic: str, packet: int) -> bytes:
    """A QoS 1 payload that makes a PUBLISH of exactly `packet` bytes on `topic`."""
    for n in range(packet, -1, -1):
        if broker.publish_packet_size(topic, n) == packet:
            return b"x" * n
    raise AssertionError(f"no payload makes a {packet}-byte packet on {topic}")


def test_a_devices_largest_packet_gets_through_and_nothing_over_the_cap(hardened, pki):
    service = Client(hardened.port, SERVICE_USER, ca=pki.ca, topics=("d/#",))
    device = Client(hardened.port, LONGEST_ID, ca=pki.ca)
    telemetry = broker.topic(LONGEST_ID, "t")
    largest = payload_for_packet(telemetry, broker.DEVICE_TX_SIZE)
    info = device.publish(telemetry, largest)
    assert pump([service, device], lambda: info.is_published() and service.messages)
    assert service.messages == [(telemetry, largest)]
    # One byte over the cap, as Mosquitto counts it (1 + body).
    too_big = b"x" * (broker.MAX_PACKET_SIZE - broker.publish_body_size(telemetry, 0))
    assert broker.mosquitto_size(broker.publish_body_size(telemetry, len(too_big))) == \
        broker.MAX_PACKET_SIZE + 1
    device.publish(telemetry, too_big)
    assert pump([service, device], lambda: device.dropped)
    pump([service], lambda: False, timeout=0.3)
    assert service.messages == [(telemetry, largest)]
    assert f"Client {LONGEST_ID} disconnected due to oversize packet." in hardened.log()
    service.close()


def test_a_command_larger_than_the_broker_takes_never_reaches_the_device(hardened, pki):
    commands = broker.topic(LONGEST_ID, "c")
    device = Client(hardened.port, LONGEST_ID, clean=False, ca=pki.ca, topics=(commands,))
    service = Client(hardened.port, SERVICE_USER, ca=pki.ca)
    at_device_limit = b"a" * broker.COMMAND_PAYLOAD_MAX
    # The largest the broker passes: the devices' own largest packets must get through.
    at_broker_limit = b"b" * (broker.MAX_PACKET_SIZE - 1 - broker.publish_body_size(commands, 0))
    for payload in (at_device_limit, at_broker_limit):
        info = service.publish(commands, payload)
        assert pump([service, device], info.is_published)
    for payload in (at_broker_limit + b"b", b"c" * 100_000):
        # Another copy of the service (its own user, as the client id is the user name).
        sender = Client(hardened.port, SERVICE_USER_2, ca=pki.ca)
        sender.publish(commands, payload)
        assert pump([sender], lambda: sender.dropped), "the broker took it"  # noqa: B023
    info = service.publish(commands, b"last")
    assert pump([service, device], lambda: len(device.messages) >= 3)
    pump([device], lambda: False, timeout=0.3)
    assert [p for _, p in device.messages] == [at_device_limit, at_broker_limit, b"last"]
    assert service.dropped == device.dropped == 0
    assert hardened.log().count(f"Client {SERVICE_USER_2} disconnected due to oversize "
                                "packet.") == 2
    device.close()
    service.close()


# -- the whole firmware -----------------------------------------------------------------------

# The longest id config allows: its SUBSCRIBE (2+2+2+topic+1 bytes) is the largest control
# packet the client makes (firmware/app/uplink/mqtt.py, _CTL).
FIRMWARE_ID = "long-" + "x" * 59


def test_the_firmware_works_with_the_exported_configuration_and_its_command_limit(
        make_device, interpreter, tmp_path, pki):
    server = ExportedBroker(tmp_path / "broker", {**CREDENTIALS, FIRMWARE_ID: "pw-fw-5Hn1"},
                            SERVICE_USERS, pki)
    try:
        service = Client(server.port, SERVICE_USER, ca=pki.ca,
                         topics=(f"d/{FIRMWARE_ID}/r", f"d/{FIRMWARE_ID}/s"))
        files = device_files(FIRMWARE_ID, server.port, "pw-fw-5Hn1", mqtt_tls=1)
        files["ca.pem"] = pki.ca.read_bytes()
        device = make_device(device_modules=[APP], modem=load_scenario("good"),
                             files=files)
        first = device.run(600, script=device_script())  # its session and subscription
        assert pump([service], lambda: service.messages), first.script_output[-2000:]
        assert f"Received SUBSCRIBE from {FIRMWARE_ID}" in server.log()
        commands = broker.topic(FIRMWARE_ID, "c")
        limit = broker.command_payload_max(FIRMWARE_ID)
        head = b'{"id": "edge", "op": "ota", "pad": "'
        at_limit = head + b"x" * (limit - len(head) - 2) + b'"}'
        assert len(at_limit) == limit == 248
        over = at_limit.replace(b'"edge"', b'"over"') + b" "
        # A batch larger than the receive buffer, read a line at a time over TLS.
        (batch, carried), = pack(FIRMWARE_ID, [
            {"id": "k%d" % i, "op": "config", "set": {"report_interval_s": 900 + i}}
            for i in range(16)])
        assert broker.DEVICE_RX_SIZE < len(batch) <= broker.DEVICE_BATCH_BYTES
        for payload in (at_limit, over, batch):
            info = service.publish(commands, payload)
            assert pump([service], info.is_published)
        sender = Client(server.port, SERVICE_USER_2, ca=pki.ca)
        sender.publish(commands, b'{"id": "huge", "op": "ota", "pad": "' + b"x" * 100_000 + b'"}')
        assert pump([sender], lambda: sender.dropped), "the broker took a 100 KB command"
        second = device.run(600, script=device_script())

        def replies() -> list[dict]:
            return [json.loads(p) for t, p in service.messages if t.endswith("/r")]

        pump([service], lambda: len(replies()) >= 4, timeout=1)  # a fourth would be "huge"
        assert replies() == [
            {"id": "edge", "ok": False, "error": "offer: expected an object"},
            {"id": None, "ok": False, "error": f"too large: {limit + 1} bytes"},
            {"id": batch_id(carried), "ok": True, "n": 16}], (second.script_output[-3000:])
        log = device.console_log.read_text()
        assert "session ended" not in log, log[-3000:]
        assert f" as {FIRMWARE_ID} " in server.log()
        service.close()
    finally:
        server.stop()
