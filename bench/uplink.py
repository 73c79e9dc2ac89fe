"""uplink.bytes_per_device_day, uplink.baseline_bytes_per_device_day and
uplink.tls_bytes_per_device_day: bytes over the air (the modem model's count, TCP/IP overhead
included, both directions) for one device-day of the whole firmware talking to a real Mosquitto
on loopback.

Default profile: a reading every 15 min (batch of 4 per message, CBOR, keepalive 3300 s) and
about 20 counter events a day. Baseline, same run: JSON payloads, one publish per reading,
60 s keepalive. Target: at most a fifth of the baseline and under 20 KB per device-day.
TLS: the default profile again, to a broker whose only listener is TLS (a test CA made for the
run), so the figure carries the handshake of each session and every record's overhead."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "uplink"))  # the broker runner and device script

from conftest import DEVICES, SERVICE_PASSWORD, SERVICE_USER, Mosquitto, device_files  # noqa: E402
from device_script import device_script  # noqa: E402
from test_tls import make_test_pki  # noqa: E402

from musket_sim import VirtualDevice  # noqa: E402
from musket_sim.scenario import load_scenario  # noqa: E402

DAY_S = 86400
EVENT_EVERY_S = DAY_S // 20
BASELINE = {"telemetry_json": 1, "batch_size": 1, "keepalive_s": 60}


def air_bytes(workdir: Path, port: int, config: dict, ca_pem: bytes | None = None) -> int:
    device = VirtualDevice("esp32-sim7080g", workdir, interpreter="cpython",
                           modem=load_scenario("good"))
    files = device_files("dev-a", port, **config)
    if ca_pem is not None:
        files["ca.pem"] = ca_pem
    device.create_flash(files)
    result = device.run(DAY_S, script=device_script(EVENT_EVERY_S, DAY_S))
    if result.errors:
        raise SystemExit(f"the device reported errors: {result.errors}")
    return sum(boot["air_up"] + boot["air_down"] for boot in result.modem)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        creds = dict(DEVICES)
        creds[SERVICE_USER] = SERVICE_PASSWORD
        pki = make_test_pki(Path(tmp) / "pki")
        broker = Mosquitto(Path(tmp) / "broker", creds)
        tls_broker = Mosquitto(Path(tmp) / "tls-broker", creds, extra=pki.mosquitto_lines())
        try:
            ours = air_bytes(Path(tmp) / "default", broker.port, {})
            baseline = air_bytes(Path(tmp) / "baseline", broker.port, BASELINE)
            tls = air_bytes(Path(tmp) / "tls", tls_broker.port, {"mqtt_tls": 1},
                            pki.ca.read_bytes())
        finally:
            broker.stop()
            tls_broker.stop()
    print(f"default profile {ours} B/day, baseline {baseline} B/day, "
          f"ratio {ours / baseline:.3f}; over TLS {tls} B/day (+{tls - ours})")
    print(f"FIGURE uplink.bytes_per_device_day {ours} bytes")
    print(f"FIGURE uplink.baseline_bytes_per_device_day {baseline} bytes")
    print(f"FIGURE uplink.tls_bytes_per_device_day {tls} bytes")


if __name__ == "__main__":
    main()
