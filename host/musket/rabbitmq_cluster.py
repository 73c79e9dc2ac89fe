"""A RabbitMQ cluster on this machine: N nodes on localhost, each with its own ports, data and
logs under one work folder, for the fleet's scale-out test, its bench and the demo.

On real machines each node is a host of its own and the nodes' configuration is
musket.rabbitmq.NodeConf's; here the nodes share a host, so each gets its own node name
(``rabbit-<k>@localhost``), ports, Erlang distribution port, and a shared Erlang cookie (the
nodes' HOME), and one port mapper (epmd) on a port of the cluster's own. Node 1 starts first
and forms the cluster; the others join it through classic peer discovery, one at a time: the
MQTT plugin tracks client IDs in a Raft group of its own, and of two nodes that ask to join it at
once, one can be refused and never asks again, its MQTT listener then accepting connections it
never answers. Each node is started only when the one before it is a member. Debian's scripts in
/usr/lib/rabbitmq/bin are run directly: the /usr/sbin wrappers switch to the rabbitmq user,
who cannot read the work folder.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from musket import system
from musket.errors import Unreachable
from musket.rabbitmq import NodeConf

START_TIMEOUT_S = 120  # a node boots in about 10 s; two cores shared with tests take longer
HOST = "localhost"


class ClusterError(Unreachable):
    """A node that would not start, join or take the definitions; the message has its log's
    last lines."""


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Node:
    index: int
    name: str
    amqp_port: int
    mqtt_port: int
    dist_port: int
    dir: Path
    proc: subprocess.Popen | None = None


class LocalCluster:
    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        scripts = system.require("rabbitmq-defaults").parent
        self._server = scripts / "rabbitmq-server"
        self._ctl = scripts / "rabbitmqctl"
        ports = _free_ports(3 * size + 1)
        self.epmd_port = ports.pop()
        names = tuple(f"rabbit-{k}@{HOST}" for k in range(1, size + 1))
        self.nodes = [Node(k, names[k - 1], ports[3 * (k - 1)], ports[3 * (k - 1) + 1],
                           ports[3 * (k - 1) + 2], self.dir / f"node-{k}")
                      for k in range(1, size + 1)]
        cookie = self.dir / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16))
            cookie.chmod(0o400)
        for node in self.nodes:
            node.dir.mkdir(exist_ok=True)
            (node.dir / "rabbitmq.conf").write_text(
                NodeConf(node.amqp_port, node.mqtt_port, names).render())
            (node.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")

    def _env(self, node: Node) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HOME=str(self.dir), ERL_EPMD_PORT=str(self.epmd_port),
                   RABBITMQ_NODENAME=node.name,
                   RABBITMQ_CONFIG_FILE=str(node.dir / "rabbitmq"),
                   RABBITMQ_ENABLED_PLUGINS_FILE=str(node.dir / "enabled_plugins"),
                   RABBITMQ_MNESIA_BASE=str(node.dir / "data"),
                   RABBITMQ_LOG_BASE=str(node.dir / "log"),
                   RABBITMQ_DIST_PORT=str(node.dist_port),
                   RABBITMQ_PID_FILE=str(node.dir / "pid"))
        return env

    def ctl(self, node: Node, *args: str, timeout: float = 60) -> str:
        done = subprocess.run([str(self._ctl), "-n", node.name, *args], env=self._env(node),
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ClusterError(f"rabbitmqctl {args[0]} on {node.name}: "
                               f"{(done.stderr or done.stdout).strip()[-600:]}")
        return done.stdout

    def start_node(self, node: Node) -> None:
        log = open(node.dir / "server.out", "ab")  # noqa: SIM115 - the node's own, kept open
        node.proc = subprocess.Popen([str(self._server)], env=self._env(node), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.ctl(node, "wait", str(node.dir / "pid"), "--timeout", str(START_TIMEOUT_S),
                     timeout=START_TIMEOUT_S + 10)
        except (ClusterError, subprocess.TimeoutExpired) as e:
            tail = (node.dir / "server.out").read_text(errors="replace")[-800:]
            raise ClusterError(f"{node.name} did not start: {e}; its output ends: {tail}") \
                from None

    def start(self, definitions: dict | None = None) -> None:
        """Node 1, then the others one by one, each a member of the client-ID group before the
        next starts; then the definitions."""
        for joined, node in enumerate(self.nodes, start=1):
            self.start_node(node)
            if not self.await_client_id_members(joined):
                # Asked again on its next boot (the plugin re-joins a group it knows of).
                self.restart(node)
                if not self.await_client_id_members(joined):
                    raise ClusterError(f"{node.name} is not in the MQTT client-ID group, which "
                                       f"has {self.client_id_members()}: its MQTT connections "
                                       "would never be answered")
        running = self.running_nodes()
        if len(running) != len(self.nodes):
            raise ClusterError(f"only {running} joined the cluster")
        if definitions is not None:
            self.import_definitions(definitions)

    def import_definitions(self, definitions: dict) -> None:
        path = self.dir / "definitions.json"
        path.write_text(json.dumps(definitions))
        path.chmod(0o600)  # password hashes
        self.ctl(self.nodes[0], "import_definitions", str(path))
        self.ctl(self.nodes[0], "await_online_nodes", str(len(self.nodes)))

    def client_id_members(self) -> list[str]:
        """The nodes in the MQTT plugin's client-ID group, as its leader knows them."""
        reply = self.ctl(self.nodes[0], "eval",
                         "case ra:members({mqtt_node, node()}) of "
                         "{ok, M, _} -> [atom_to_list(N) || {_, N} <- M]; _ -> [] end.")
        return sorted(re.findall(r'"([^"]+)"', reply))

    def await_client_id_members(self, count: int, timeout: float = START_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.client_id_members()) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    def running_nodes(self) -> list[str]:
        status = json.loads(self.ctl(self.nodes[0], "cluster_status", "--formatter", "json"))
        return sorted(status.get("running_nodes", []))

    def kill(self, node: Node) -> None:
        """The node's whole process group, at once (a power cut, not a shutdown)."""
        if node.proc is not None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(10)
            node.proc = None

    def restart(self, node: Node) -> None:
        """A node killed and started again on the same data: it rejoins the cluster and the
        queues it held a replica of catch up."""
        self.kill(node)
        self.start_node(node)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                try:
                    self.ctl(node, "stop", timeout=30)
                    node.proc.wait(30)
                except (ClusterError, subprocess.TimeoutExpired):
                    pass  # kill() below ends it either way
                if node.proc is not None and node.proc.poll() is None:
                    self.kill(node)
                node.proc = None
        # The port mapper the nodes started is the cluster's own (its port): end it too.
        subprocess.run(["pkill", "-f", f"epmd.*-port {self.epmd_port}"], check=False)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
