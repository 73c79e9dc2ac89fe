"""What the demo added to the parts: `musket sim run --start` and `musket.mosquitto`."""

from __future__ import annotations

import calendar
import json
import threading
from datetime import date

import paho.mqtt.client as mqtt
from click.testing import CliRunner

from musket import broker
from musket.cli import main
from musket.mosquitto import Mosquitto


def test_sim_run_start_puts_the_virtual_clock_on_that_day(tmp_path):
    out = CliRunner().invoke(main, ["sim", "run", "--for", "1s", "--interpreter", "cpython",
                                    "--usage", "none", "--scenario", "none", "--workdir",
                                    str(tmp_path), "--start", "2026-12-04", "--json"])
    assert out.exit_code == 0, out.output
    settings = json.loads((tmp_path / "boot-settings.json").read_text())
    assert settings["epoch"] == calendar.timegm(date(2026, 12, 4).timetuple())


def test_sim_run_start_refuses_a_date_that_is_not_one(tmp_path):
    out = CliRunner().invoke(main, ["sim", "run", "--for", "1s", "--workdir", str(tmp_path),
                                    "--start", "2026-13-04"])
    assert out.exit_code == 2
    assert "'2026-13-04' does not match the format '%Y-%m-%d'" in out.output
    assert not (tmp_path / "flash.bin").exists()


def _connects(port: int, user: str, password: str) -> int:
    """The CONNACK's reason code for this user and password (0: accepted)."""
    answered = threading.Event()
    codes = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
    client.username_pw_set(user, password)

    def on_connect(c, userdata, flags, reason_code, properties):
        codes.append(reason_code.value)
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(10), "no CONNACK"
    finally:
        client.loop_stop()
        client.disconnect()
    return codes[0]


def test_mosquitto_admits_the_registry_hashes_and_the_service_users_only(tmp_path):
    device_password = "device-secret-for-tests"
    devices = [("msk-test0001", broker.hash_password(device_password))]
    run = Mosquitto(tmp_path / "broker")
    run.start(devices, {"fleet": "fleet-secret-for-tests"})
    try:
        assert _connects(run.port, "msk-test0001", device_password) == 0
        assert _connects(run.port, "fleet", "fleet-secret-for-tests") == 0
        assert _connects(run.port, "fleet", "wrong") != 0
        passwd = (tmp_path / "broker" / "passwd").read_text()
        assert "fleet-secret-for-tests" not in passwd and device_password not in passwd
        assert (tmp_path / "broker" / "passwd").stat().st_mode & 0o077 == 0
    finally:
        proc = run.proc
        run.stop()
    assert proc.poll() is not None and run.proc is None
