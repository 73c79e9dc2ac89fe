"""A Mosquitto process on loopback for a bench or a demo: its configuration written by
`musket.broker.MosquittoConf` into a folder of its own, started, waited for, stopped.

The devices' credentials are the registry's stored hashes (`Registry.broker_users`); service
users (the fleet service, a station) are added with passwords given here, hashed before they
are written. Nothing here is for a production broker, which runs under its own service
manager with the files `musket registry export-broker` writes.
"""

from __future__ import annotations

import getpass
import socket
import subprocess
import time
from pathlib import Path

from musket import broker, system

START_TIMEOUT_S = 10  # Mosquitto listens within milliseconds; a slow CI machine gets 10 s
STOP_TIMEOUT_S = 10


class MosquittoError(broker.BrokerError):
    """Mosquitto did not start (its own words are in the message)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """Plain MQTT on 127.0.0.1 (loopback only: nothing crosses a network), persistent
    sessions, the devices' ACL."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()  # known before the start: provisioning writes it to units
        self.proc: subprocess.Popen | None = None
        conf = broker.MosquittoConf(str(self.folder / "passwd"), str(self.folder / "acl"),
                                    tls=False, port=self.port, address="127.0.0.1",
                                    persistence_location=f"{self.folder.resolve()}/")
        # Started as root, Mosquitto would switch to its own user and lose the files.
        (self.folder / "mosquitto.conf").write_text(
            conf.render() + f"user {getpass.getuser()}\n"
            f"log_dest file {(self.folder / 'mosquitto.log').resolve()}\n"
            # Nagle's algorithm would hold small packets behind the modem model's real-time
            # waits for a peer's answer.
            "set_tcp_nodelay true\n")

    def write_users(self, devices: list[tuple[str, str]], service_users: dict[str, str]) -> None:
        entries = list(devices) + [(user, broker.hash_password(password))
                                   for user, password in service_users.items()]
        broker.write_text_atomically(self.folder / "passwd",
                                     broker.render_hashed_password_file(entries), 0o600)
        broker.write_text_atomically(self.folder / "acl", broker.render_acl(
            [user for user, _ in devices], list(service_users)))

    def start(self, devices: list[tuple[str, str]], service_users: dict[str, str]
              ) -> Mosquitto:
        """Starts the broker for these devices (user, stored hash) and service users (user,
        password)."""
        self.write_users(devices, service_users)
        program = str(system.require("mosquitto"))
        self.proc = subprocess.Popen([program, "-c", str(self.folder / "mosquitto.conf")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise MosquittoError("mosquitto did not start: "
                                         + self.proc.stderr.read().decode().strip()) from None
                time.sleep(0.05)
        self.stop()
        raise MosquittoError(f"mosquitto did not listen on port {self.port} in "
                             f"{START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
