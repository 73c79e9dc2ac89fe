"""The end-of-line test: a provisioned unit proves itself before it leaves the factory.

    from musket.eol import BrokerWatch, verify
    from musket.registry import Registry, default_actor

    with Registry.open() as registry:
        result = verify("/dev/ttyUSB0", registry, default_actor("eol-1", "ana"),
                        BrokerWatch("mqtt.example.com", 8883, "eol", password, "ca.pem"))
        print(result.passed, result.codes)

Over the unit's console (the application running, with the production credentials it was
provisioned with) it waits for the unit to come online, runs the unit's selftest, whose
diagnosis codes are the failures, and then waits for the unit's first message of this boot to
be acknowledged by the broker: the station subscribes to the unit's up-topics as a service
user of the broker, where only messages the broker accepted (QoS 1, PUBACKed) arrive. The first
such message of a session is the unit's online status (contract A, retained on d/<id>/s, sent
with the CONNECT); it counts when its boot count is the one the console reports, so a status
left from an earlier boot does not; telemetry (d/<id>/t, d/<id>/e) counts as it comes. Without
a broker at hand the station reads the unit's own count of acknowledged telemetry instead.
The result, its measurements (signal, sensor readings) and the time it took go to the
registry, and the unit is marked shippable only when it passed.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass

from musket.console import ConsoleClient, redact
from musket.console.commands import device_id_of
from musket.console.view import codes_in
from musket.errors import BadInput, Unreachable
from musket.registry import Actor, Registry
from musket.registry.eol import EolResult, record

# Before the selftest: how long a freshly reset unit may take to register and reach the broker
# (the modem's attach is up to a minute; a first session's backoff adds to it).
ONLINE_TIMEOUT_S = 180.0
# Codes a unit shows while it is still attaching or connecting: the station waits them out
# (up to ONLINE_TIMEOUT_S) before the selftest; any other code is a fault waiting cannot fix.
ATTACHING_CODES = ("NET_NOCOV", "BROKER_DOWN")
# After the selftest: how long the station waits for the unit's telemetry to be acknowledged
# (the selftest already brought the broker link up; this covers a reconnect with backoff).
TELEMETRY_TIMEOUT_S = 60.0
# Without a broker at hand, how often the unit's own acknowledged count is read.
STATUS_POLL_S = 1.0
BROKER_CONNECT_TIMEOUT_S = 15.0
# The failure code when no telemetry reached the broker: the diagnosis table's (one table, the
# firmware's: musket.diagnoses).
NO_TELEMETRY = "BROKER_DOWN"
TELEMETRY_TOPICS = ("t", "e")
STATUS_TOPIC = "s"


class EolError(BadInput):
    """The unit cannot be tested as it is (not provisioned), or the settings are unusable."""


@dataclass(frozen=True)
class BrokerWatch:
    """Where the station sees the unit's telemetry: the broker, as a service user."""

    host: str
    port: int
    user: str
    password: str
    ca_file: str | None = None

    def __repr__(self) -> str:  # the password stays out of logs and tracebacks
        return f"BrokerWatch({self.host}:{self.port}, user={self.user})"


class TelemetryWatch:
    """Subscribed to one device's up-topics; `wait` returns once a message of this boot came
    (telemetry, or the online status whose boot count is `boot_count`)."""

    def __init__(self, settings: BrokerWatch, device_id: str, boot_count: int | None) -> None:
        import paho.mqtt.client as mqtt

        self.device_id = device_id
        self.boot_count = boot_count
        self.topic: str | None = None
        self._subscribed = threading.Event()
        self._arrived = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"musket-eol-{int(time.time() * 1000)}",
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(settings.user, settings.password)
        if settings.ca_file:
            self.client.tls_set(ca_certs=settings.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        try:
            self.client.connect(settings.host, settings.port, keepalive=60)
        except OSError as e:
            raise Unreachable(f"cannot reach the broker at {settings.host}:{settings.port}: "
                              f"{e}") from None
        self.client.loop_start()
        if not self._subscribed.wait(BROKER_CONNECT_TIMEOUT_S):
            self.close()
            raise Unreachable(f"the broker at {settings.host}:{settings.port} did not accept "
                              f"the station's session", hint="check the service user's name "
                                                             "and password")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code == 0:
            client.subscribe([(f"d/{self.device_id}/{t}", 1)
                              for t in (*TELEMETRY_TOPICS, STATUS_TOPIC)])

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic.endswith("/" + STATUS_TOPIC) and not self._this_boot(msg.payload):
            return
        self.topic = msg.topic
        self._arrived.set()

    def _this_boot(self, payload: bytes) -> bool:
        """The online status map (not the will's 0) of the boot the console sees."""
        try:
            if payload[:1] == b"{":
                status = json.loads(payload)
            else:
                import cbor2

                status = cbor2.loads(payload)
        except Exception:  # noqa: BLE001 - a status this station cannot read does not count
            return False
        return (isinstance(status, dict) and status.get("on") == 1
                and self.boot_count is not None and status.get("bc") == self.boot_count)

    def wait(self, timeout: float) -> bool:
        return self._arrived.wait(timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def verify(port: str, registry: Registry, actor: Actor, broker: BrokerWatch | None = None,
           telemetry_timeout: float = TELEMETRY_TIMEOUT_S) -> EolResult:
    """Tests one provisioned unit and records the result; returns it (passed or not)."""
    started = time.monotonic()
    with ConsoleClient.open(port) as unit:
        device_id = device_id_of(unit.status())
        if not device_id:
            raise EolError(f"{port}: the unit has no device ID: provision it first "
                           "(`musket provision`)")
        if registry.device(device_id) is None:
            raise EolError(f"{port}: device {device_id} is not in the registry "
                           f"{registry.url}")
        online = _wait_until_online(unit, ONLINE_TIMEOUT_S)
        watch = TelemetryWatch(broker, device_id, online.get("boot_count")) if broker else None
        try:
            acked_before = _acked(online)
            test = unit.selftest() or {}
            codes = codes_in(test)
            passed = bool(test.get("passed", not codes)) and not codes
            # A unit that failed its selftest has failed: the line does not wait for its
            # telemetry too.
            telemetry, seen = None, {"via": "not checked: the selftest failed"}
            if passed and watch is not None:
                telemetry = watch.wait(telemetry_timeout)
                seen = {"via": "broker", "topic": watch.topic}
            elif passed:
                telemetry = _wait_for_ack(unit, acked_before, telemetry_timeout)
                seen = {"via": "unit"}
            # What the factory keeps of the unit: its signal and sensor readings as the
            # selftest left them.
            status = unit.status()
        finally:
            if watch is not None:
                watch.close()
    if passed and not telemetry:
        codes.append(NO_TELEMETRY)
        passed = False
    measurements = {"selftest": redact(test.get("checks", {})),
                    "signal": _signal(status), "sensors": status.get("sensors"),
                    "telemetry": {**seen, "acked": telemetry}}
    result = EolResult(device_id=device_id, passed=passed, codes=codes,
                       measurements=measurements, seconds=time.monotonic() - started)
    return record(registry, result, actor)


def _signal(status) -> dict:
    modem = status.get("modem") if isinstance(status, dict) else None
    if not isinstance(modem, dict):
        return {}
    return {k: modem.get(k) for k in ("rsrp", "rsrq", "sinr", "rssi_dbm", "operator", "act",
                                      "band") if modem.get(k) is not None}


def _acked(status) -> int | None:
    """The unit's count of telemetry messages the broker acknowledged (its uplink counts a
    message as sent once the PUBACK came), when it reports one."""
    uplink = status.get("uplink") if isinstance(status, dict) else None
    value = uplink.get("sent") if isinstance(uplink, dict) else None
    return value if isinstance(value, int) else None


def _wait_until_online(unit: ConsoleClient, timeout: float) -> dict:
    """The unit's status once its broker link is up, or once it shows a fault that waiting
    will not fix, or when the time is up (the selftest then names what is wrong)."""
    deadline = time.monotonic() + timeout
    while True:
        status = unit.status()
        uplink = status.get("uplink") if isinstance(status, dict) else None
        if isinstance(uplink, dict) and uplink.get("state") == "connected":
            return status
        if any(code not in ATTACHING_CODES for code in codes_in(status)):
            return status
        if time.monotonic() > deadline:
            return status
        time.sleep(STATUS_POLL_S)


def _wait_for_ack(unit: ConsoleClient, before: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        now = _acked(unit.status())
        if now is not None and (before is None or now > before):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(STATUS_POLL_S)
