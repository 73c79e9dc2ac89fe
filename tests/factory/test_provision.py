"""Acceptance: `musket provision` against virtual devices running the real firmware under the
real MicroPython interpreter, reached through their console pty with mpremote's transport.

Each device is a `musket sim run --console` process, as on a bench; its modem model's ICCID
and IMEI come from a scenario file, the chip ID from the seed. After each step the test reads
the files from the littlefs partition of the device's flash image and the registry's rows.

Units are provisioned for TLS (the default) with a CA made here, except where a test opts out.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from musket import broker, fsimage
from musket.boards import load_board
from musket.cli import main
from musket.errors import ExitCode
from musket.provision import (
    BrokerSettings,
    ProvisionError,
    ProvisionInputError,
    ProvisionOptions,
    provision,
)
from musket.registry import Actor, BindingRefused, Registry

BOARD = "esp32-sim7080g"
ACTOR = Actor("line-1", "ana")
ICCID_A, ICCID_B = "8949019237115905561", "8949017000000000001"
IMEI_A = "869715053990670"
SPEED = 50  # virtual seconds per wall second while the application idles before provisioning
STARTUP_TIMEOUT_S = 20
PROVISIONED_FILES = ("ca.pem", "config.json", "secrets.json")
_RECORD_HEADER = struct.Struct("<4sBBII")  # app/store.py: magic, version, flags, length, crc


def make_ca_pem() -> bytes:
    """A self-signed CA certificate (PEM), as the broker's CA would be."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "musket test broker CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


CA_PEM = make_ca_pem()
BROKER = BrokerSettings("127.0.0.1", ca_pem=CA_PEM)  # TLS, port 8883: the defaults


class Bench:
    """A virtual unit on the bench: `musket sim run --console` in its own process group."""

    def __init__(self, workdir: Path, seed: int, scenario: dict | str) -> None:
        self.workdir = workdir
        self.seed = seed
        self.scenario = scenario
        self.proc: subprocess.Popen | None = None

    def start(self, fresh: bool = True) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        scenario = self.scenario
        if isinstance(scenario, dict):
            path = self.workdir.parent / f"{self.workdir.name}-scenario.json"
            path.write_text(json.dumps(scenario))
            scenario = str(path)
        out = self.workdir.parent / f"{self.workdir.name}-stdout.txt"
        cmd = [str(Path(sys.executable).with_name("musket")), "sim", "run", "--console",
               "--for", "30d", "--speed", str(SPEED), "--workdir", str(self.workdir),
               "--seed", str(self.seed), "--scenario", scenario, "--board", BOARD,
               "--fresh" if fresh else "--keep-flash"]
        with open(out, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            first = out.read_text(errors="replace").partition("\n")
            if first[1]:
                assert first[0].startswith("console: /dev/"), first[0]
                return first[0].removeprefix("console: ").strip()
            if self.proc.poll() is not None:
                pytest.fail(f"musket sim run ended early:\n{out.read_text()}")
            time.sleep(0.05)
        pytest.fail(f"no console within {STARTUP_TIMEOUT_S} s:\n{out.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def files(self) -> dict[str, bytes]:
        """The unit's filesystem as it is on its flash now."""
        part = load_board(BOARD).filesystem(ota=False)
        image = (self.workdir / "flash.bin").read_bytes()
        return fsimage.read(image[part.offset:part.offset + part.size])


def record(data: bytes) -> dict:
    """The JSON object in a store record (app/store.py's write_json)."""
    magic, _version, _flags, length, _crc = _RECORD_HEADER.unpack_from(data)
    assert magic == b"MSKR"
    return json.loads(data[_RECORD_HEADER.size:_RECORD_HEADER.size + length])


@pytest.fixture
def bench(tmp_path):
    made: list[Bench] = []

    def make(name: str, seed: int, scenario: dict | str) -> Bench:
        unit = Bench(tmp_path / name, seed, scenario)
        made.append(unit)
        return unit

    yield make
    for unit in made:
        unit.stop()


@pytest.fixture
def registry(tmp_path):
    sims = tmp_path / "sims.csv"
    sims.write_text(f"ICCID,plan,state\n{ICCID_A},iot-eu,inventory\n{ICCID_B},iot-eu,inventory\n")
    with Registry.open(tmp_path / "registry.sqlite", migrate=True) as r:
        r.import_sims(sims, ACTOR)
        yield r


def test_provision_binds_and_running_again_changes_nothing(bench, registry, tmp_path):
    unit = bench("a", seed=1, scenario={"iccid": ICCID_A, "imei": IMEI_A})
    port = unit.start()
    result = provision(port, registry, BROKER, ACTOR)
    assert (result.action, result.iccid, result.imei) == ("provision", ICCID_A, IMEI_A)
    assert result.label == f"{result.device_id} IMEI {IMEI_A} ICCID {ICCID_A}"
    assert result.written == ["/ca.pem", "/secrets.json", "/config.json"]
    device = registry.device(result.device_id)
    assert (device.iccid, device.imei, device.sim_state) == (ICCID_A, IMEI_A, "bound")

    files = unit.files()
    config = record(files["config.json"])
    assert {k: config[k] for k in ("device_id", "mqtt_host", "mqtt_port", "mqtt_tls")} == {
        "device_id": result.device_id, "mqtt_host": "127.0.0.1", "mqtt_port": 8883,
        "mqtt_tls": 1}
    assert files["ca.pem"] == CA_PEM
    secrets = record(files["secrets.json"])
    assert secrets["mqtt_user"] == result.device_id
    assert broker.verify_password(secrets["mqtt_password"],
                                  registry.secret_hash(result.device_id))
    assert not any(name.endswith((".new", ".tmp")) for name in files), sorted(files)
    before = {name: files[name] for name in PROVISIONED_FILES}
    counts = registry.counts()

    # Again, through the command line: the same unit is found and nothing is written. A
    # script written when TLS was an opt-in (--tls) still runs.
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(CA_PEM)
    out = CliRunner().invoke(main, [
        "provision", "--port", port, "--registry", str(tmp_path / "registry.sqlite"),
        "--broker-host", "127.0.0.1", "--tls", "--ca", str(ca_file), "--station", "line-1",
        "--operator", "ana"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines() == [
        f"{port}: already provisioned as {result.device_id}; nothing changed",
        f"label: {result.label}"]
    after = unit.files()
    assert {name: after[name] for name in PROVISIONED_FILES} == before
    assert registry.counts() == {**counts, "audit": counts["audit"] + 1}
    assert registry.audit(limit=1)[0].action == "unchanged"
    password = secrets["mqtt_password"]
    assert password not in out.output and password not in (unit.workdir / "console.log"
                                                            ).read_text(errors="replace")


def test_a_second_unit_with_the_same_sim_is_refused(bench, registry):
    first = bench("a", seed=1, scenario={"iccid": ICCID_A})
    provisioned = provision(first.start(), registry, BROKER, ACTOR)
    first.stop()
    counts = registry.counts()

    second = bench("b", seed=2, scenario={"iccid": ICCID_A})
    port = second.start()
    with pytest.raises(BindingRefused, match=f"SIM {ICCID_A} is already bound to device "
                                             f"{provisioned.device_id}"):
        provision(port, registry, BROKER, ACTOR)
    assert registry.counts() == counts
    files = second.files()
    assert not any(name.startswith(("config.json", "secrets.json", "ca.pem"))
                   for name in files), sorted(files)


def test_a_sim_swap_needs_rebind_and_is_audited(bench, registry):
    unit = bench("a", seed=1, scenario={"iccid": ICCID_A})
    first = provision(unit.start(), registry, BROKER, ACTOR)
    unit.stop()
    unit.scenario = {"iccid": ICCID_B}  # the same board, another SIM in its slot
    port = unit.start(fresh=False)
    with pytest.raises(BindingRefused, match="--rebind"):
        provision(port, registry, BROKER, ACTOR)
    swapped = provision(port, registry, BROKER, ACTOR,
                        ProvisionOptions(rebind=True, reason="SIM cracked", reset=False))
    assert (swapped.action, swapped.device_id, swapped.previous_iccid) == (
        "rebind", first.device_id, ICCID_A)
    assert swapped.written == []  # the unit keeps its config and credentials
    assert registry.sim(ICCID_A).state == "retired"
    assert registry.sim(ICCID_B).state == "bound"
    rebind = registry.audit(subject=first.device_id)[-1]
    assert rebind.action == "rebind" and rebind.changes["reason"] == "SIM cracked"


def test_a_dead_modem_stops_the_unit_with_nothing_written(bench, registry):
    unit = bench("dead", seed=3, scenario="none")  # a board whose modem never answers
    port = unit.start()
    counts = registry.counts()
    with pytest.raises(ProvisionError, match="the modem does not answer .*nothing written"):
        provision(port, registry, BROKER, ACTOR)
    assert registry.counts() == counts
    assert not any(name.startswith(("config.json", "secrets.json"))
                   for name in unit.files())


def test_plain_mqtt_is_an_explicit_opt_out(bench, registry, tmp_path):
    unit = bench("plain", seed=4, scenario={"iccid": ICCID_A})
    port = unit.start()
    out = CliRunner().invoke(main, [
        "provision", "--port", port, "--registry", str(tmp_path / "registry.sqlite"),
        "--broker-host", "127.0.0.1", "--no-tls", "--no-reset", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["written"] == ["/secrets.json", "/config.json"]
    files = unit.files()
    config = record(files["config.json"])
    # The firmware's defaults (port 1883, no TLS): its config record keeps only other values.
    assert (config.get("mqtt_port"), config.get("mqtt_tls")) == (None, None), config
    assert config["device_id"] == json.loads(out.output)["device_id"]
    assert "ca.pem" not in files


def test_without_a_ca_or_an_opt_out_nothing_starts(tmp_path):
    # Refused before the registry or the unit's port is opened.
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(CA_PEM)
    missing = tmp_path / "never-made.sqlite"
    common = ["provision", "--port", str(tmp_path / "no-such-port"), "--registry", str(missing),
              "--broker-host", "mqtt.example.com"]
    for extra, message in (
            ([], "error: TLS needs the broker's CA certificate: give --ca FILE, or opt out "
                 "with --no-tls\nhint: units connect with TLS by default; --no-tls is plain "
                 "MQTT, where their credentials cross the network in clear\n"),
            (["--tls"], "error: TLS needs the broker's CA certificate"),
            (["--no-tls", "--ca", str(ca_file)],
             "error: a CA certificate was given with --no-tls: drop one of them\n")):
        out = CliRunner().invoke(main, common + extra)
        assert out.exit_code == ExitCode.BAD_INPUT, out.output
        assert out.output.startswith(message), out.output
    assert not missing.exists()
    with pytest.raises(ProvisionInputError, match="TLS needs the broker's CA certificate"):
        BrokerSettings("mqtt.example.com")
    assert (BrokerSettings("h", ca_pem=CA_PEM).port, BrokerSettings("h", tls=False).port,
            BrokerSettings("h", 8884, ca_pem=CA_PEM).port) == (8883, 1883, 8884)
    with pytest.raises(ProvisionInputError, match="not a PEM certificate"):
        BrokerSettings("h", ca_pem=b"not a certificate")
