"""Helpers for the fleet service's tests: the registry's seed, telemetry made by the firmware's
own codec, and the uplink tests' broker (tests/uplink/conftest.py, loaded under its own name so
that the two conftest modules do not clash)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

from musket.identity import luhn_check_digit
from musket.registry import Actor, binding

TESTS = Path(__file__).resolve().parent.parent
FIRMWARE = TESTS.parent / "firmware"
ACTOR = Actor("fleet-tests", "ana")
PLAN = "iot-eu-10mb"
DEVICES = ["dev-a", "dev-b", "dev-c"]
SPARE_SIMS = 10


def iccid(n: int) -> str:
    body = f"89490{n:013d}"
    return body + luhn_check_digit(body)


def device_iccid(device_id: str) -> str:
    return iccid(DEVICES.index(device_id) + 1)


def spare_iccids() -> list[str]:
    return [iccid(100 + n) for n in range(SPARE_SIMS)]


def seed(registry, folder: Path) -> None:
    """Imports the SIMs, and binds one to each of DEVICES (device IDs chosen, not drawn)."""
    csv_path = folder / "fleet-sims.csv"
    rows = [f"{device_iccid(d)},{PLAN},inventory" for d in DEVICES]
    rows += [f"{i},{PLAN},inventory" for i in spare_iccids()]
    csv_path.write_text("ICCID,plan,state\n" + "\n".join(rows) + "\n")
    registry.import_sims(csv_path, ACTOR)
    for n, device_id in enumerate(DEVICES):
        bind(registry, device_id, device_iccid(device_id), n)


def bind(registry, device_id: str, sim: str, n: int) -> None:
    """Provisions device `device_id` (the n-th unit) with SIM `sim`, as the factory would."""
    unit = binding.Unit(iccid=sim, imei=_imei(n), imsi="2620143893231%02d" % n,
                        chip_id="240ac40000%02d" % n, board="esp32-sim7080g")
    with registry.transaction() as conn:
        plan = binding.BindingPlan(device_id, True, None, False, None)
        binding.apply(conn, plan, unit, ACTOR)


def _imei(n: int) -> str:
    body = f"86971505399{n:03d}"
    return body + luhn_check_digit(body)


def load_module(name: str, path: Path):
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    # Compiled from text: the codec's first line ("Telemetry encoding: CBOR") reads as a
    # source-encoding declaration to CPython's byte loader.
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module


def codec():
    """The firmware's telemetry codec (app/uplink/codec.py), run under CPython."""
    return load_module("firmware_codec", FIRMWARE / "app" / "uplink" / "codec.py")


def broker_module():
    """tests/uplink/conftest.py: its Mosquitto, credentials and device files."""
    return load_module("uplink_broker", TESTS / "uplink" / "conftest.py")


def make_pki(directory: Path):
    """A CA and a broker certificate for 127.0.0.1 it signed (tests/uplink/test_tls.py's
    make_test_pki, loaded with the uplink tests' conftest and helpers in reach)."""
    saved = sys.modules.get("conftest")
    sys.modules["conftest"] = broker_module()
    sys.path.insert(0, str(TESTS / "uplink"))
    try:
        tls = load_module("uplink_tls", TESTS / "uplink" / "test_tls.py")
    finally:
        sys.path.remove(str(TESTS / "uplink"))
        if saved is None:
            sys.modules.pop("conftest", None)
        else:
            sys.modules["conftest"] = saved
    return tls.make_test_pki(directory)


def broker_users() -> dict[str, str]:
    m = broker_module()
    users = dict(m.DEVICES)
    users[m.SERVICE_USER] = m.SERVICE_PASSWORD
    return users


def telemetry(mseq: int, events=(), readings=(), t0: int = 1_796_000_000,
              as_json: bool = False) -> bytes:
    """A telemetry message as the device makes it. events: (seq, name, total) triples, one
    use each; readings: (rseq, {key: value}) pairs."""
    c = codec()
    evs = [(seq, t0 + i, "use", name, 1, total, None)
           for i, (seq, name, total) in enumerate(events)]
    rds = [(rseq, c.reading_record(t0 + 60 * i, values))
           for i, (rseq, values) in enumerate(readings)]
    payload, _, _ = c.encode(mseq, t0, evs, rds, 448, as_json)
    return bytes(payload)


def status(**fields) -> bytes:
    """A status map (contract A) in CBOR, made with the firmware's CBOR encoder."""
    out = bytearray()
    raw = {"on": 1, "v": 1}
    raw.update(fields)
    codec().cbor(out, raw)
    return bytes(out)


# -- the service as it runs in production: `musket fleet serve` processes ---------------------

MUSKET = Path(sys.executable).parent / "musket"


class ServeProcess:
    """One `musket fleet serve` copy against the test broker; `kill()` is SIGKILL (no goodbye,
    no last batch), `stop()` is SIGTERM (the graceful stop)."""

    def __init__(self, location: str, port: int, client_id: str, folder: Path,
                 status: bool = True, group: str | None = None,
                 ca: Path | None = None, wait: bool = True) -> None:
        import os
        import subprocess

        m = broker_module()
        env = dict(os.environ, MUSKET_MQTT_PASSWORD=m.SERVICE_PASSWORD)
        self.log_path = folder / f"serve-{client_id}.log"
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [str(MUSKET), "fleet", "serve", "--registry", location,
             "--broker", f"127.0.0.1:{port}", "--user", m.SERVICE_USER,
             "--client-id", client_id, "--status" if status else "--no-status",
             *(["--group", group] if group else []),
             *(["--ca", str(ca)] if ca else [])],
            stdout=self.log_file, stderr=self.log_file, env=env)
        if wait:  # until it has subscribed
            self.wait_for("subscribed")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30, count: int = 1) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"fleet serve ended ({self.proc.returncode}): {self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"fleet serve did not log {text!r} in {timeout} s: {self.log()}")

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(30)
        self.log_file.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.log_file.close()


class DevicePublisher:
    """A paho client logged in as a device (its own credentials and ACL), publishing QoS 1."""

    def __init__(self, port: int, device_id: str, ca: Path | None = None) -> None:
        import paho.mqtt.client as mqtt

        m = broker_module()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id,
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(device_id, m.DEVICES[device_id])
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        if not info.is_published():
            raise RuntimeError(f"{topic}: not acknowledged by the broker")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_until(predicate, timeout: float = 30, what: str = "condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not reached in {timeout} s (last: {predicate()!r})")
