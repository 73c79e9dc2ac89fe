"""A broker that misbehaves, in front of the real Mosquitto, against the whole firmware through
the modem model's data path, under both interpreters. Its first connections get garbage instead
of a CONNACK, a SUBACK cut mid-packet, a refused CONNECT and no answer at all; each ends in a
clear error in the device's log, the device retries with a growing backoff, and once the
connections reach Mosquitto every counter event committed meanwhile arrives exactly once, in
order."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

from conftest import device_files
from device_script import APP, device_script

from musket import broker
from musket_sim.scenario import load_scenario

# (what the broker does, the error the device must log for it)
MISBEHAVIOURS = [
    ("garbage", "session ended: protocol: unexpected packet 0xf7"),
    ("cut", "session ended: no SUBACK: connection closed by the broker"),
    ("refuse", "session ended: connect: refused: not authorised"),
    ("silent", "session ended: connect: no CONNACK in 30000 ms"),
]
BACKOFF_MIN_S = 5  # service.py: 5 s doubling, +-25 % jitter


def _read_packet(conn: socket.socket) -> bytes:
    # One MQTT packet from the device (the CONNECT), whole; b"" if the device closed.
    head = conn.recv(1)
    size, shift = 0, 0
    while head:
        b = conn.recv(1)
        if not b:
            return b""
        head += b
        size |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    body = b""
    while head and len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            return b""
        body += chunk
    return head + body


class FlakyBroker:
    """A TCP server on loopback: connection i gets behaviours[i], later ones are piped to the
    real Mosquitto."""

    def __init__(self, upstream_port: int, behaviours: list[str]) -> None:
        self.upstream_port = upstream_port
        self.behaviours = list(behaviours)
        self.served: list[str] = []
        self._connect = b""  # the last CONNECT read from the device
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.open.append(conn)
            behaviour = self.behaviours.pop(0) if self.behaviours else "proxy"
            self.served.append(behaviour)
            threading.Thread(target=self._serve, args=(conn, behaviour), daemon=True).start()

    def _serve(self, conn: socket.socket, behaviour: str) -> None:
        try:
            if behaviour == "proxy":
                self._pipe(conn)
                return
            self._connect = _read_packet(conn)
            if not self._connect.startswith(b"\x10"):
                return
            if behaviour == "garbage":
                conn.sendall(b"\xf7\x01\x02garbage")
            elif behaviour == "cut":
                conn.sendall(b"\x20\x02\x00\x00")  # CONNACK: no session, so it subscribes
                _read_packet(conn)  # the retained status PUBLISH came with the CONNECT
                _read_packet(conn)  # SUBSCRIBE
                conn.sendall(b"\x90\x03\x00")  # half a SUBACK, then the connection ends
            elif behaviour == "refuse":
                conn.sendall(b"\x20\x02\x00\x05")  # not authorised
            elif behaviour == "silent":
                conn.recv(1024)  # holds the connection open, answering nothing
                return
            elif behaviour == "lose-connack":
                # The CONNECT reaches Mosquitto, which makes the persistent session; its
                # CONNACK is lost on the way back.
                up = socket.create_connection(("127.0.0.1", self.upstream_port))
                self.open.append(up)
                up.sendall(self._connect)
                _read_packet(up)
                up.close()
            conn.close()
        except OSError:
            pass

    def _pipe(self, conn: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream_port))
        self.open.append(up)

        def copy(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(4096):
                    dst.sendall(data)
            except OSError:
                pass
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=copy, args=(up, conn), daemon=True).start()
        copy(conn, up)

    def close(self) -> None:
        self.server.close()
        for conn in self.open:
            conn.close()


def _ended(log: str) -> list[tuple[float, str]]:
    # (uptime s, message) of each "session ended" line of the device's log.
    return [(float(m.group(1)), m.group(2)) for m in
            re.finditer(r"\[\s*([\d.]+)\] W uplink: (session ended: .*)", log)]


def test_a_misbehaving_broker_ends_in_clear_errors_and_loses_no_event(
        make_device, mosquitto, subscriber):
    sub = subscriber()
    flaky = FlakyBroker(mosquitto.port, [b for b, _ in MISBEHAVIOURS])
    try:
        device = make_device(device_modules=[APP], modem=load_scenario("good"),
                             files=device_files("dev-a", flaky.port))
        first = device.run(600, script=device_script(event_every_s=30, events_until_s=600))
        # Events committed near the end wait for the next report: a boot flushes them.
        device.run(120, script=device_script())
    finally:
        flaky.close()
    log = device.console_log.read_text()
    assert flaky.served[:len(MISBEHAVIOURS)] == [b for b, _ in MISBEHAVIOURS]
    ended = _ended(log)
    assert [m for _, m in ended[:len(MISBEHAVIOURS)]] == [e for _, e in MISBEHAVIOURS], log
    # Each retry waits longer: at least the backoff's lower bound before the next failure.
    times = [t for t, _ in ended[:len(MISBEHAVIOURS)]]
    for i in range(1, len(times)):
        assert times[i] - times[i - 1] >= BACKOFF_MIN_S * 2 ** (i - 1) * 0.75, ended
    assert "uplink: connected (session new)" in log.split(MISBEHAVIOURS[-1][1])[1], log

    committed = [int(line.split()[1]) for line in first.script_output.splitlines()
                 if line.startswith("EV ")]
    assert len(committed) >= 15, first.script_output[-2000:]
    stream = broker.DeviceStream()
    for payload in sub.on("d/dev-a/e", "d/dev-a/t"):
        stream.add(broker.decode_telemetry(payload))
    assert [e.seq for e in stream.events] == committed, log[-3000:]
    assert stream.gaps == []


def test_a_lost_first_connack_still_ends_subscribed(make_device, mosquitto, subscriber):
    # The broker kept the session its first CONNECT made, without a subscription: the next
    # CONNACK says "session present", and the device must subscribe all the same.
    sub = subscriber()
    flaky = FlakyBroker(mosquitto.port, ["lose-connack"])
    try:
        device = make_device(device_modules=[APP], modem=load_scenario("good"),
                             files=device_files("dev-a", flaky.port))
        first = device.run(600, script=device_script())
        log = device.console_log.read_text()
        assert flaky.served[:2] == ["lose-connack", "proxy"], flaky.served
        assert "uplink: connected (session kept)" in log, log[-3000:]
        sub.publish("d/dev-a/c", b'{"id": "after-loss", "op": "status"}')
        device.run(300, script=device_script())
    finally:
        flaky.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not sub.on("d/dev-a/r"):
        time.sleep(0.05)
    replies = [json.loads(p) for p in sub.on("d/dev-a/r")]
    assert [r["id"] for r in replies] == ["after-loss"], first.script_output[-2000:]
