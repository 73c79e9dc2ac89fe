"""Acceptance helpers: virtual units on the bench (`musket sim run --console` processes, as a
technician's laptop would see a board on USB) and a person at the interactive console (pexpect
types into `musket console`, pyte keeps the screen it draws, as a terminal would)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pexpect
import pyte
import pytest

from musket.registry import Actor

MUSKET = str(Path(sys.executable).with_name("musket"))
TESTS = Path(__file__).resolve().parent.parent
BOARD = "esp32-sim7080g"
ACTOR = Actor("line-1", "ana")
# Valid ICCIDs (Luhn check digit last).
ICCIDS = ["8949019237115905561", "8949017000000000001", "89882280666012345678"]
STARTUP_TIMEOUT_S = 30
# The console answers once the application's console task runs (after boot and config).
READY_TIMEOUT_S = 60
SCREEN_ROWS, SCREEN_COLUMNS = 60, 160
# A café open all day, a brew every few virtual minutes: counts move within a short test.
BUSY_USAGE = {"brews_per_day": 1000, "dispenses_per_day": 0, "open_h": [0, 24]}


def load_test_module(path: Path, name: str):
    """Another test folder's helper module (a conftest.py), loaded under a name of its own so
    that it does not shadow this folder's."""
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(path.parent))  # for what it imports from its own folder
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def uplink_fixtures():
    """tests/uplink's real Mosquitto runner (Mosquitto, SERVICE_USER, SERVICE_PASSWORD)."""
    return load_test_module(TESTS / "uplink" / "conftest.py", "uplink_conftest")


def start_broker(workdir: Path):
    """A real Mosquitto on loopback (tests/uplink's runner) with the service user only."""
    fixtures = uplink_fixtures()
    return fixtures.Mosquitto(workdir, {fixtures.SERVICE_USER: fixtures.SERVICE_PASSWORD})


def admit_registry_devices(mosquitto, registry) -> None:
    """Lets the registry's provisioned devices in, as `musket registry export-broker` would
    (their stored hashes, each confined to its own topics), beside the service user."""
    from musket import broker

    fixtures = uplink_fixtures()
    users = registry.broker_users()
    (mosquitto.dir / "passwd").write_text(
        broker.render_hashed_password_file(users)
        + broker.render_password_file({fixtures.SERVICE_USER: fixtures.SERVICE_PASSWORD}))
    (mosquitto.dir / "acl").write_text(
        broker.render_acl([u for u, _ in users], [fixtures.SERVICE_USER]))
    mosquitto.restart()


def service_watch(mosquitto):
    """Where the end-of-line station watches the units' messages arrive."""
    from musket.eol import BrokerWatch

    fixtures = uplink_fixtures()
    return BrokerWatch("127.0.0.1", mosquitto.port, fixtures.SERVICE_USER,
                       fixtures.SERVICE_PASSWORD)


class VirtualUnit:
    """One unit: `musket sim run --console` in its own process group, its console's pty."""

    def __init__(self, workdir: Path, *, seed: int = 1, scenario: dict | str = "good",
                 usage: dict | str = "day", speed: float = 1, interpreter: str = "micropython",
                 span: str = "30d") -> None:
        self.workdir = workdir
        self.seed, self.speed, self.interpreter, self.span = seed, speed, interpreter, span
        self.usage_dict = usage if isinstance(usage, dict) else None
        self.scenario = self.file("scenario", scenario)
        self.usage = self.file("usage", usage)
        self.proc: subprocess.Popen | None = None
        self.port: str | None = None
        self.out = workdir.parent / f"{workdir.name}-stdout.txt"

    def file(self, what: str, value: dict | str) -> str:
        """A scenario (or usage) given as a dict, written next to the unit's folder."""
        if not isinstance(value, dict):
            return value
        path = self.workdir.parent / f"{self.workdir.name}-{what}.json"
        self.workdir.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
        return str(path)

    def start(self, fresh: bool = True) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [MUSKET, "sim", "run", "--console", "--for", self.span, "--speed",
               str(self.speed), "--workdir", str(self.workdir), "--seed", str(self.seed),
               "--scenario", self.scenario, "--usage", self.usage, "--board", BOARD,
               "--interpreter", self.interpreter, "--fresh" if fresh else "--keep-flash"]
        with open(self.out, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            first = self.out.read_text(errors="replace").partition("\n")
            if first[1]:
                assert first[0].startswith("console: /dev/"), first[0]
                self.port = first[0].removeprefix("console: ").strip()
                return self.port
            if self.proc.poll() is not None:
                pytest.fail(f"musket sim run ended early:\n{self.out.read_text()}")
            time.sleep(0.05)
        pytest.fail(f"no console within {STARTUP_TIMEOUT_S} s:\n{self.out.read_text()}")

    def wait_ready(self) -> dict:
        """Waits until the application's console answers; returns its status."""
        from musket.console import ConsoleClient, ConsoleTimeout

        deadline = time.monotonic() + READY_TIMEOUT_S
        with ConsoleClient.open(self.port) as unit:
            while True:
                try:
                    return unit.status()
                except ConsoleTimeout:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise

    def wait_status(self, check, timeout: float = READY_TIMEOUT_S) -> dict:
        """Asks for the unit's status until `check(status)` holds; returns that status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.wait_ready()
            if check(status):
                return status
            if time.monotonic() > deadline:
                pytest.fail(f"the unit's status never showed what was waited for: {status}")
            time.sleep(1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def console_log(self) -> str:
        path = self.workdir / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Person:
    """Someone at the interactive console: types, and reads the screen as drawn."""

    def __init__(self, port: str, *args: str, env: dict | None = None) -> None:
        self.screen = pyte.Screen(SCREEN_COLUMNS, SCREEN_ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(MUSKET, ["console", "--port", port, *args],
                                   dimensions=(SCREEN_ROWS, SCREEN_COLUMNS),
                                   env={**os.environ, **(env or {})})

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def pump(self, seconds: float = 0.2) -> None:
        end = time.monotonic() + seconds
        while True:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.1))
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                return
            if time.monotonic() >= end:
                return

    def wait_for(self, *texts: str, timeout: float = 60) -> str:
        """Waits until every text is on the screen at once; returns the screen."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            screen = self.text()
            if all(t in screen for t in texts):
                return screen
            if time.monotonic() > deadline or not self.child.isalive():
                pytest.fail(f"not on the screen within {timeout} s: {texts}\n{screen}")

    def type(self, line: str) -> None:
        self.child.send(line + "\r")
        self.pump(0.3)

    def leave(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)

    def quit(self) -> int:
        self.type("quit")
        self.child.expect(pexpect.EOF, timeout=20)
        self.child.close()
        return self.child.exitstatus


@pytest.fixture
def units(tmp_path):
    """make(name, **options) -> a VirtualUnit, stopped when the test ends."""
    with ExitStack() as stack:
        def make(name: str, **kwargs) -> VirtualUnit:
            unit = VirtualUnit(tmp_path / name, **kwargs)
            stack.callback(unit.stop)
            return unit

        yield make


@pytest.fixture
def people():
    """make(port, *options) -> a Person at `musket console`, sent away when the test ends."""
    with ExitStack() as stack:
        def make(port: str, *args: str, **kwargs) -> Person:
            person = Person(port, *args, **kwargs)
            stack.callback(person.leave)
            return person

        yield make


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto for units in service (see admit_registry_devices)."""
    mosquitto = start_broker(tmp_path / "broker")
    yield mosquitto
    mosquitto.stop()


def make_registry(folder: Path) -> Path:
    """A migrated SQLite registry in `folder` holding the SIMs of ICCIDS in inventory."""
    from musket.registry import Registry

    sims = folder / "sims.csv"
    sims.write_text("ICCID,plan,state\n" + "".join(f"{i},iot-eu,inventory\n" for i in ICCIDS))
    path = folder / "registry.sqlite"
    with Registry.open(path, migrate=True) as registry:
        registry.import_sims(sims, ACTOR)
    return path


def provision_in_service(unit: VirtualUnit, registry_file: Path, mosquitto) -> str:
    """Starts the unit, provisions it for the broker (plain MQTT on loopback) and lets it in;
    returns its device ID."""
    from musket.provision import BrokerSettings, provision
    from musket.registry import Registry

    unit.start()
    with Registry.open(registry_file) as registry:
        device_id = provision(unit.port, registry,
                              BrokerSettings("127.0.0.1", mosquitto.port, tls=False),
                              ACTOR).device_id
        admit_registry_devices(mosquitto, registry)
    return device_id
