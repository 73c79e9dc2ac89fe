"""MQTT over TLS from the whole firmware, through the modem model, to a real Mosquitto whose
only listener is TLS, under both interpreters (MicroPython's tls / mbedTLS, CPython's ssl).
The test CA and the broker's certificate (for 127.0.0.1 and localhost) are made here with
`cryptography`; the subscriber is paho-mqtt over TLS.

A device given another CA refuses the broker before sending its credentials, says why, retries
with backoff, and delivers every counter event once it has the right CA."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import cbor2
import pytest
from checksuite import call
from conftest import (
    DEVICES,
    SERVICE_PASSWORD,
    SERVICE_USER,
    Mosquitto,
    Subscriber,
    device_files,
)
from device_script import APP, device_script

from musket import broker
from musket_sim.device import micropython_binary
from musket_sim.scenario import load_scenario

HOUR = 3600
FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"

# A TLS handshake with app.uplink.tlsstream under the real MicroPython, straight over a socket,
# with only `free` bytes of the MicroPython heap left (the rest taken by ballast).
_HANDSHAKE_IN_A_SMALL_HEAP = Path(__file__).parent / "checks" / "tls_handshake.py"
# mbedTLS peaks near 29 KB during a handshake; tlsstream's objects need about 7 KB of heap.
_SMALL_HEAP_FREE = 12 * 1024


@dataclass
class TlsFiles:
    """A CA, a broker certificate it signed, and an unrelated CA, as PEM files in `dir`."""

    dir: Path
    ca: Path
    cert: Path
    key: Path
    other_ca: Path

    def mosquitto_lines(self) -> str:
        """Listener settings that make the broker's one listener TLS only, as `musket registry
        export-broker --conf` writes them (no cafile: the device holds the CA)."""
        return f"certfile {self.cert}\nkeyfile {self.key}\n"


def make_test_pki(directory: Path) -> TlsFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    pem = serialization.Encoding.PEM

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject: str, issuer: str, key) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30)))

    def ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (builder(cn, cn, key)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = ca("musket test CA")
    _, other = ca("another CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    server = (builder("localhost", "musket test CA", server_key)
              .add_extension(san, critical=False).sign(ca_key, hashes.SHA256()))
    pki = TlsFiles(directory, directory / "ca.pem", directory / "server.pem",
                  directory / "server.key", directory / "other-ca.pem")
    pki.ca.write_bytes(ca_cert.public_bytes(pem))
    pki.other_ca.write_bytes(other.public_bytes(pem))
    pki.cert.write_bytes(server.public_bytes(pem))
    pki.key.write_bytes(server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    return pki


@pytest.fixture
def pki(tmp_path) -> TlsFiles:
    return make_test_pki(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path, pki):
    creds = dict(DEVICES)
    creds[SERVICE_USER] = SERVICE_PASSWORD
    server = Mosquitto(tmp_path / "broker", creds, extra=pki.mosquitto_lines())
    yield server
    server.stop()


@pytest.fixture
def tls_subscriber(tls_broker, pki):
    sub = Subscriber(tls_broker.port, persistent=True, ca=pki.ca)
    yield sub
    sub.close()


def tls_device_files(port: int, ca_pem: bytes) -> dict[str, bytes]:
    files = device_files("dev-a", port, mqtt_tls=1)
    files["ca.pem"] = ca_pem
    return files


def decoded(sub: Subscriber) -> broker.DeviceStream:
    stream = broker.DeviceStream()
    for payload in sub.on("d/dev-a/e", "d/dev-a/t"):
        stream.add(broker.decode_telemetry(payload))
    return stream


def wait_for_events(sub: Subscriber, committed: list[int], timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        stream = decoded(sub)
        if [e.seq for e in stream.events] == committed or time.monotonic() > deadline:
            return stream
        time.sleep(0.1)


def committed_seqs(output: str) -> list[int]:
    return [int(line.split()[1]) for line in output.splitlines() if line.startswith("EV ")]


def test_the_plain_port_is_closed_so_only_tls_gets_through(tls_broker):
    # The device tests below prove TLS only if the broker cannot be reached without it.
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(SERVICE_USER, SERVICE_PASSWORD)
    client.connect("127.0.0.1", tls_broker.port, keepalive=5)  # TCP only; CONNECT in clear
    for _ in range(30):
        if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS or client.is_connected():
            break
    assert not client.is_connected()
    client.disconnect()


def test_mbedtls_memory_is_outside_the_micropython_heap(tls_broker, pki):
    # Why the sim gives the firmware no TLS allowance (sim/device.py): were mbedTLS's buffers
    # in the MicroPython heap, as they are in some builds, this handshake would not fit.
    env = dict(os.environ, MICROPYPATH=f".frozen:{FIRMWARE}")
    result = subprocess.run(
        [micropython_binary(), "-X", "heapsize=256K", str(_HANDSHAKE_IN_A_SMALL_HEAP),
         str(tls_broker.port),
         str(pki.ca), str(_SMALL_HEAP_FREE)],
        env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    free = int(re.search(r"free (\d+)", result.stdout).group(1))
    assert free < _SMALL_HEAP_FREE + 256, result.stdout
    # CONNACK, return code 5: the broker answered through TLS (this client sent no password).
    assert "connack 20020005" in result.stdout, result.stdout
    assert "input view kept True" in result.stdout, result.stdout
    assert "closed twice" in result.stdout, result.stdout


def test_device_publishes_over_tls_and_the_subscriber_decodes_it(
        make_device, tls_broker, tls_subscriber, pki):
    device = make_device(device_modules=[APP], modem=load_scenario("good"),
                         files=tls_device_files(tls_broker.port, pki.ca.read_bytes()))
    # Events go out with the next report (every 15 min): the run goes on past the last one's.
    result = device.run(2 * HOUR + 1800, script=device_script(event_every_s=900,
                                                              events_until_s=2 * HOUR))
    committed = committed_seqs(result.script_output)
    assert len(committed) >= 5, result.script_output[-2000:]
    stream = wait_for_events(tls_subscriber, committed)
    log = device.console_log.read_text()
    assert [e.seq for e in stream.events] == committed, log[-3000:]
    assert stream.gaps == []
    assert len(stream.readings) >= 4  # a reading every 15 min
    # "online" (the status map, contract A) once connected; not the will's "offline" (0).
    online = tls_subscriber.on("d/dev-a/s")[:1]
    assert online and cbor2.loads(online[0])["on"] == 1, online
    assert "session ended" not in log, log[-3000:]
    assert " as dev-a " in tls_broker.log()


def test_a_broker_certificate_from_another_ca_is_refused_and_nothing_is_lost(
        make_device, tls_broker, tls_subscriber, pki):
    device = make_device(device_modules=[APP], modem=load_scenario("good"),
                         files=tls_device_files(tls_broker.port, pki.other_ca.read_bytes()))
    refused = device.run(HOUR, script=device_script(event_every_s=600, events_until_s=HOUR))
    log = device.console_log.read_text()
    failures = [float(m.group(1)) for m in re.finditer(
        r"\[\s*(\d+\.\d+)\] W uplink: session ended: tls: handshake failed: (.*)", log)]
    reasons = set(re.findall(r"session ended: (tls: handshake failed: .*)", log))
    assert len(failures) >= 4, log[-3000:]
    assert len(reasons) == 1, reasons
    reason = reasons.pop()  # mbedTLS's words, or OpenSSL's
    assert "not correctly signed" in reason or "certificate verify failed" in reason, reason
    # Backoff: each retry waits longer than the one before (5 s doubling, +-25 % jitter).
    gaps = [b - a for a, b in zip(failures, failures[1:], strict=False)]
    assert all(later > earlier for earlier, later in zip(gaps[:4], gaps[1:5], strict=False)), gaps
    # The device never sent its CONNECT (credentials) to a broker it could not verify.
    assert " as dev-a " not in tls_broker.log()
    assert tls_subscriber.on("d/dev-a/e", "d/dev-a/t") == []
    committed = committed_seqs(refused.script_output)
    assert len(committed) >= 4, refused.script_output[-2000:]

    # Provisioned again with the right CA: every event kept through the refusals arrives.
    fix = call("app_with_events.write_file", "/ca.pem", pki.ca.read_bytes())
    # Events stop half-way, so the last one goes out at a report inside the run.
    recovered = device.run(HOUR, script=fix + device_script(event_every_s=600,
                                                            events_until_s=HOUR // 2))
    committed += committed_seqs(recovered.script_output)
    stream = wait_for_events(tls_subscriber, committed)
    assert [e.seq for e in stream.events] == committed, device.console_log.read_text()[-3000:]
    assert stream.gaps == []
