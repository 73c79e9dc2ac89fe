"""Serving update bundles to devices over MQTT (docs/ota.md, "Transfer").

The fleet offers a bundle with an "ota" command on the device's command topic; the device
then pulls it: each request on ``d/<id>/u`` names the campaign, an offset and a length, and
the chunk goes back on ``d/<id>/c`` as binary (0x00, the offset as u32 big-endian, the bytes).
The device asks only for what it does not hold, so a chunk goes twice only when a request or
its chunk was lost. The device's reports on the same topic say how the update goes:
downloaded, then from the update's boot stage at its next boots verifying (the bundle
checked), staged (written to the spare partition), booting (the trial's first boot), and
confirmed, rolled back or rejected.

The server answers any number of devices from one MQTT session, as a service user of the
broker's ACL (musket.broker: service users read and write every device's topics).
"""

from __future__ import annotations

import json
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from musket.errors import BadInput
from musket.ota import bundle

CHUNK_MAX = 240  # the most a device asks for at once (firmware/app/ota/download.py)
CHUNK_MARK = b"\x00"
FINAL_STATES = ("confirmed", "rolled_back", "rejected")
# The states of a device's update, in the order it passes them; the last three are final.
STATES = ("offered", "downloading", "downloaded", "verifying", "staged", "booting",
          *FINAL_STATES)


class TransferError(BadInput):
    """The broker cannot be reached, or an offer cannot be made."""


@dataclass
class DeviceUpdate:
    """One device's side of a transfer: what it was offered and what it said."""

    device_id: str
    campaign: str
    version: str
    data: bytes
    state: str = "offered"  # then on through STATES
    reason: str | None = None
    # Every state it went through, with its reason, in order: several can come at once.
    history: list[tuple[str, str | None]] = field(default_factory=lambda: [("offered", None)])
    served: Counter = field(default_factory=Counter)  # offset -> times its chunk was sent
    reports: list[dict] = field(default_factory=list)

    def moved(self, state: object, reason: object = None) -> None:
        """The device reported `state`: the update moves on to it, unless it is not one of
        STATES or not past the one it is in (a report sent again)."""
        if state not in STATES or self.state in FINAL_STATES or \
                STATES.index(state) <= STATES.index(self.state):
            return
        self.state = state
        self.reason = reason if isinstance(reason, str) else None
        self.history.append((self.state, self.reason))

    @property
    def bytes_served(self) -> int:
        return sum(min(CHUNK_MAX, len(self.data) - at) * n for at, n in self.served.items())

    @property
    def resent_chunks(self) -> int:
        return sum(n - 1 for n in self.served.values() if n > 1)


class BundleServer:
    """Offers bundles to devices and serves their chunk requests until stopped."""

    def __init__(self, host: str, port: int, user: str, password: str,
                 ca_file: str | None = None) -> None:
        self.updates: dict[str, DeviceUpdate] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"musket-ota-{int(time.time() * 1000)}",
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(user, password)
        if ca_file:
            self.client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        try:
            self.client.connect(host, port, keepalive=60)
        except OSError as e:
            raise TransferError(f"cannot reach the broker at {host}:{port}: {e}") from None
        self.client.loop_start()
        if not self._connected.wait(15):
            self.close()
            raise TransferError(f"the broker at {host}:{port} did not accept the session",
                                hint="check the service user's name and password")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code == 0:
            client.subscribe("d/+/u", qos=1)
            self._connected.set()

    def offer(self, device_id: str, campaign: str, version: str, data: bytes) -> None:
        """Offers the bundle `data` to a device: an "ota" command, at QoS 1 (the broker
        keeps it for a device that is away)."""
        if not campaign or len(campaign) > 28 or not all(c.isalnum() or c in "_-"
                                                          for c in campaign):
            raise TransferError(f"campaign {campaign!r}: 1-28 letters, digits, _ or -")
        with self._lock:
            self.updates[device_id] = DeviceUpdate(device_id, campaign, version, data)
        command = {"id": f"ota-{campaign}", "op": "ota",
                   "offer": {"campaign": campaign, "version": version, "size": len(data),
                             "kind": bundle.kind_of(data)}}
        self.client.publish(f"d/{device_id}/c", json.dumps(command, separators=(",", ":")),
                            qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 3:
            return
        device_id = parts[1]
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return  # not ours to answer: a device's garbage gets nothing
        if not isinstance(body, dict):
            return
        with self._lock:
            update = self.updates.get(device_id)
            if update is None or body.get("c") != update.campaign:
                return
            if "at" in body:
                chunk = self._chunk(update, body)
                if chunk is not None:
                    update.served[body["at"]] += 1
                    if update.state == "offered":
                        update.moved("downloading")
            else:
                update.reports.append(body)
                update.moved(body.get("state"), body.get("reason"))
                chunk = None
            self._changed.notify_all()
        if chunk is not None:
            client.publish(f"d/{device_id}/c", chunk, qos=0)

    @staticmethod
    def _chunk(update: DeviceUpdate, request: dict) -> bytes | None:
        at, n = request.get("at"), request.get("n")
        if not isinstance(at, int) or not isinstance(n, int):
            return None
        if at < 0 or at >= len(update.data) or not 0 < n <= CHUNK_MAX:
            return None
        return CHUNK_MARK + struct.pack(">I", at) + update.data[at:at + n]

    def wait(self, device_ids: list[str], states: tuple[str, ...], timeout_s: float) -> bool:
        """Waits until every device's update is in one of `states` (or a final one); False
        if the time ran out first."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                pending = [d for d in device_ids
                           if self.updates[d].state not in states + FINAL_STATES]
                if not pending:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 1.0))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
