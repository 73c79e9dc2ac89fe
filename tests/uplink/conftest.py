"""A real Mosquitto on loopback for the uplink's tests: generated password file and ACL (from
musket.broker), restartable mid-test, and a paho-mqtt subscriber that collects messages."""

from __future__ import annotations

import getpass
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from musket import broker, system

SERVICE_USER = "fleet"
SERVICE_PASSWORD = "fleet-pass-for-tests"
DEVICES = {"dev-a": "pw-a-7Kq2", "dev-b": "pw-b-9Zx4"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One broker process; `restart()` stops it and starts it again on the same port.
    `services` are the fleet's users among `credentials`; every other user is a device."""

    def __init__(self, workdir: Path, credentials: dict[str, str], extra: str = "",
                 services: tuple[str, ...] = (SERVICE_USER,)) -> None:
        self.dir = workdir
        self.port = _free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "passwd").write_text(broker.render_password_file(credentials))
        devices = [u for u in credentials if u not in services]
        (self.dir / "acl").write_text(broker.render_acl(devices, list(services)))
        (self.dir / "mosquitto.conf").write_text(
            self._settings()
            + f"log_dest file {self.dir / 'mosquitto.log'}\nlog_type all\n"
            # Started as root, Mosquitto would switch to its own user and lose the files.
            f"user {getpass.getuser()}\n"
            # Without it, Nagle's algorithm holds a CONNACK about 40 ms behind the TLS session
            # tickets sent just before it, longer than the modem model waits in real time for
            # a peer's follow-up: the device would then time out in virtual time and reconnect.
            "set_tcp_nodelay true\n" + extra)
        self.proc: subprocess.Popen | None = None
        self.start()

    def _settings(self) -> str:
        # The broker's own lines, before the ones every test broker adds.
        return (f"listener {self.port} 127.0.0.1\n"
                f"allow_anonymous false\npassword_file {self.dir / 'passwd'}\n"
                f"acl_file {self.dir / 'acl'}\n"
                f"persistence true\npersistence_location {self.dir}/\n")

    def start(self) -> None:
        program = str(system.require("mosquitto"))
        self.proc = subprocess.Popen([program, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("mosquitto did not start: "
                                       + self.proc.stderr.read().decode()) from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen in 10 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


class ExportedBroker(Mosquitto):
    """Mosquitto run with the configuration musket exports (on loopback, with a persistence
    folder of its own; TLS with the test's certificate and key when `pki` is given, else as
    `--no-tls` writes it), plus the lines every test broker adds."""

    def __init__(self, workdir: Path, credentials: dict[str, str],
                 services: tuple[str, ...] = (SERVICE_USER,), pki=None) -> None:
        self.pki = pki
        super().__init__(workdir, credentials, services=services)

    def _settings(self) -> str:
        pki = self.pki
        tls = {"certfile": str(pki.cert), "keyfile": str(pki.key)} if pki else {"tls": False}
        return broker.MosquittoConf(
            str(self.dir / "passwd"), str(self.dir / "acl"), port=self.port,
            address="127.0.0.1", persistence_location=f"{self.dir}/", **tls).render()


@pytest.fixture
def mosquitto(tmp_path):
    creds = dict(DEVICES)
    creds[SERVICE_USER] = SERVICE_PASSWORD
    server = Mosquitto(tmp_path / "broker", creds)
    yield server
    server.stop()


class Subscriber:
    """A paho-mqtt client (as the fleet service would run it) that keeps every message."""

    def __init__(self, port: int, user: str = SERVICE_USER, password: str = SERVICE_PASSWORD,
                 topics: tuple[str, ...] = ("d/#",), persistent: bool = False,
                 ca: Path | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.granted: list = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{user}",
                                  protocol=mqtt.MQTTv311, clean_session=not persistent)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.username_pw_set(user, password)
        if ca is not None:  # a TLS listener: the broker's certificate must chain to `ca`
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(3):
            self.close()
            raise RuntimeError("subscriber got no SUBACK")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.granted = [int(rc.value) if hasattr(rc, "value") else int(rc)
                        for rc in reason_codes]
        self.subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, *topic_names: str) -> list[bytes]:
        """Payloads on any of these topics, in the order they arrived."""
        with self.lock:
            return [p for t, p, _ in self.messages if t in topic_names]

    def publish(self, topic_name: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic_name, payload, qos=qos).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber(mosquitto):
    made = []

    def make(**kwargs) -> Subscriber:
        sub = Subscriber(mosquitto.port, **kwargs)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def store_record(obj) -> bytes:
    """A JSON store record as app.store.write_json leaves it on flash."""
    import binascii
    import json
    import struct

    data = json.dumps(obj).encode()
    return b"MSKR" + struct.pack("<BBII", 1, 0, len(data), binascii.crc32(data)) + data


def device_files(device_id: str, port: int, password: str | None = None,
                 **config) -> dict[str, bytes]:
    """/config.json and /secrets.json as provisioning writes them, for a broker on loopback."""
    cfg = {"device_id": device_id, "mqtt_host": "127.0.0.1", "mqtt_port": port}
    cfg.update(config)
    secret = password if password is not None else DEVICES[device_id]
    return {"config.json": store_record(cfg),
            "secrets.json": store_record({"mqtt_user": device_id, "mqtt_password": secret})}


def serve_update(device, port: int, campaign: str, version: str, bundle: bytes, until: str,
                 span_s: float = 1800):
    """Offers `bundle` to dev-a (`device`, whose session the broker on `port` keeps) as the
    fleet does (musket.ota.transfer), runs the device for `span_s` and waits for its report
    `until`; -> (the run's result, the fleet's record of dev-a's update)."""
    from musket.ota import transfer

    server = transfer.BundleServer("127.0.0.1", port, SERVICE_USER, SERVICE_PASSWORD)
    try:
        server.offer("dev-a", campaign, version, bundle)
        result = device.run(span_s)
        assert server.wait(["dev-a"], (until,), 10), server.updates["dev-a"]
    finally:
        server.close()
    return result, server.updates["dev-a"]
