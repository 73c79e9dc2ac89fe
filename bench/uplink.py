"""uplink.bytes_per_device_day, uplink.baseline_bytes_per_device_day and
uplink.tls_bytes_per_device_day: bytes over the air (the modem model's count, TCP/IP overhead
included, both directions) for one device-day of the whole firmware talking to a real Mosquitto
on loopback.

Default profile (firmware/app/config.py): a reading every 15 min, 8 per message (CBOR), a
counter event every 72 min (about 20 a day) going with the next reading, keepalive 7440 s.
Baseline, same run: JSON payloads, one publish per reading, 60 s keepalive. Target: at most a
fifth of the baseline, and over TLS at most 12,288 bytes per device-day. TLS: the default
profile again, to a broker whose only listener is TLS as `musket registry export-broker`
writes it (a test CA made for the run), so the figure carries the handshake of each session
and every record's overhead. uplink.tls_short_nat_bytes_per_device_day: the same over TLS with
`keepalive_s` 3300, the setting for a carrier whose NAT drops TCP idle for 60 min (the
readings waiting for their batch then go instead of a ping).

Where the bytes go: uplink.plain.bytes.<part> (the default profile) and uplink.tls.bytes.<part>
(the same over TLS), parts tcpip, tls_handshake, tls_records, mqtt_framing, keepalive and
payload, which add up to the day's air bytes (bench/_wire.py says what each holds). The device
reaches Mosquitto through a recording relay (bench/_wire.py: Relay); tcpip is the modem model's
air count less the bytes that crossed the device's socket, and those bytes are parsed: MQTT
packets for the plain run; for the TLS run, TLS records decrypted with the session keys the
device's TLS context logs, so the MQTT split over TLS is measured in the TLS run itself. With
them: sessions (TCP connects), PUBLISH messages up, PINGREQs per day, and the TLS handshake's
bytes per session (records only; the TCP/IP headers that carry them are in tcpip). Both
brokers run with set_tcp_nodelay (see BROKER_LINES)."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "uplink"))  # the broker runner and device script
sys.path.insert(1, str(ROOT / "tests"))  # checksuite, which packs device-side test modules

from _wire import (  # noqa: E402
    PARTS,
    UP,
    Relay,
    Tally,
    keylog_prelude,
    read_keylog,
    split_plain,
    split_tls,
)
from checksuite import modules  # noqa: E402
from conftest import DEVICES, SERVICE_PASSWORD, SERVICE_USER, Mosquitto, device_files  # noqa: E402
from device_script import APP, device_script  # noqa: E402
from test_tls import make_test_pki  # noqa: E402

from musket_sim import VirtualDevice  # noqa: E402
from musket_sim.scenario import load_scenario  # noqa: E402

DAY_S = 86400
EVENT_EVERY_S = DAY_S // 20
BASELINE = {"telemetry_json": 1, "batch_size": 1, "keepalive_s": 60}
SHORT_NAT = {"keepalive_s": 3300}  # under a 60-min NAT idle timeout
# Both brokers answer without Nagle's delay. With it, Mosquitto's second write after a TLS
# handshake (the second session ticket and the CONNACK) waits about 40 ms on loopback for the
# ACK of the first; the modem model waits only 4 x 10 ms of real time for what a peer sends
# behind its first answer (sim/models/modem/tcpip.py), so the device's 30 s CONNACK timeout could
# pass in virtual time and the day would carry extra sessions, more or fewer with the machine's
# load (measured: 1 to 21 sessions in a TLS day). A broker for small messages would set it.
BROKER_LINES = "set_tcp_nodelay true\n"


@dataclass
class Day:
    """One device-day: the modem model's counts and what crossed the socket, split."""

    air: int  # both ways, TCP/IP included
    payload: int  # the model's count of what crossed the device's socket, both ways
    crossed: int  # the relay's count of the same
    paired: bool  # the relay's sessions paired off with the model's sockets and were cut to them
    tally: Tally

    def parts(self) -> dict[str, int]:
        parts = {name: self.tally.parts[name] for name in PARTS}
        parts["tcpip"] = self.air - self.payload
        return parts

    def count(self, direction: str, packet: str) -> int:
        return self.tally.packets[(direction, packet)]


def device_day(workdir: Path, port: int, config: dict, ca_pem: bytes | None = None) -> Day:
    """One day of the firmware against the broker on `port`, through a recording relay."""
    workdir.mkdir(parents=True)
    relay = Relay(port)
    device = VirtualDevice("esp32-sim7080g", workdir, interpreter="cpython",
                           modem=load_scenario("good"))
    files = device_files("dev-a", relay.port, **config)
    files.update(modules(device.interpreter, [APP], workdir / ".mpy-cache"))
    script = device_script(EVENT_EVERY_S, DAY_S)
    keylog = workdir / "tls-keys.log"
    if ca_pem is not None:
        files["ca.pem"] = ca_pem
        script = keylog_prelude(keylog) + script
    device.create_flash(files)
    try:
        result = device.run(DAY_S, script=script)
    finally:
        relay.close()
    if result.errors:
        raise SystemExit(f"the device reported errors: {result.errors}")
    boots = result.modem
    paired = relay.trim([entry for b in boots for entry in b["sockets"]])
    tally = Tally()
    if ca_pem is None:
        split_plain(relay.sessions, tally)
    else:
        split_tls(relay.sessions, read_keylog(keylog), tally)
    return Day(air=sum(b["air_up"] + b["air_down"] for b in boots),
               payload=sum(b["payload_up"] + b["payload_down"] for b in boots),
               crossed=sum(relay.crossed()), paired=paired, tally=tally)


def report(name: str, day: Day) -> None:
    """The breakdown as a table, its checks, and its FIGURE lines."""
    parts = day.parts()
    total = sum(parts.values())
    print(f"{name}: {day.air} air bytes/day")
    for part, value in parts.items():
        print(f"  {part:<14}{value:>8}  {100 * value / day.air:5.1f} %")
    print(f"  check: {' + '.join(str(v) for v in parts.values())} = {total}"
          f" {'=' if total == day.air else '!='} {day.air} air bytes")
    print(f"  check: the modem model counted {day.payload} bytes through the socket, the "
          f"relay {day.crossed}"
          + ("" if day.paired else " (its sessions and the model's sockets did not pair off)")
          + (f"; {day.tally.truncated} bytes of a packet cut off by the day's end"
             if day.tally.truncated else ""))
    t = day.tally
    packets = ", ".join(f"{n} {d} {p}" for (d, p), n in sorted(t.packets.items()))
    print(f"  {t.sessions} sessions; MQTT packets: {packets}")
    topics = ", ".join(f"{n} on {topic} ({t.publish_bytes[(d, topic)]} B)"
                       for (d, topic), n in sorted(t.publishes.items()) if d == UP)
    print(f"  PUBLISH up: {topics}")
    for part, value in parts.items():
        print(f"FIGURE uplink.{name}.bytes.{part} {value} bytes")
    print(f"FIGURE uplink.{name}.sessions {t.sessions} connects")
    print(f"FIGURE uplink.{name}.publishes_up {day.count(UP, 'PUBLISH')} messages")
    print(f"FIGURE uplink.{name}.pingreqs {day.count(UP, 'PINGREQ')} pings")


def report_handshake(day: Day) -> None:
    t = day.tally
    sessions = max(t.sessions, 1)
    print(f"tls handshake per session ({t.sessions} sessions), bytes of TLS records:")
    for what, value in sorted(t.handshake.items(), key=lambda kv: -kv[1]):
        print(f"  {what:<28}{value / sessions:>8.0f}")
    print(f"FIGURE uplink.tls.handshake_bytes_per_session "
          f"{t.parts['tls_handshake'] / sessions:.0f} bytes")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        creds = dict(DEVICES)
        creds[SERVICE_USER] = SERVICE_PASSWORD
        pki = make_test_pki(Path(tmp) / "pki")
        broker = Mosquitto(Path(tmp) / "broker", creds, extra=BROKER_LINES)
        tls_broker = Mosquitto(Path(tmp) / "tls-broker", creds,
                               extra=BROKER_LINES + pki.mosquitto_lines())
        try:
            ours = device_day(Path(tmp) / "default", broker.port, {})
            baseline = device_day(Path(tmp) / "baseline", broker.port, BASELINE)
            tls = device_day(Path(tmp) / "tls", tls_broker.port, {"mqtt_tls": 1},
                             pki.ca.read_bytes())
            short_nat = device_day(Path(tmp) / "tls-short-nat", tls_broker.port,
                                   {"mqtt_tls": 1, **SHORT_NAT}, pki.ca.read_bytes())
        finally:
            broker.stop()
            tls_broker.stop()
    print(f"default profile {ours.air} B/day, baseline {baseline.air} B/day, "
          f"ratio {ours.air / baseline.air:.3f}; over TLS {tls.air} B/day "
          f"(+{tls.air - ours.air})")
    report("plain", ours)
    report("tls", tls)
    report_handshake(tls)
    b = baseline.parts()
    print("baseline: " + ", ".join(f"{part} {value}" for part, value in b.items())
          + f"; {baseline.count(UP, 'PUBLISH')} publishes, {baseline.count(UP, 'PINGREQ')} "
          f"pings, {baseline.tally.sessions} sessions")
    print(f"FIGURE uplink.bytes_per_device_day {ours.air} bytes")
    print(f"FIGURE uplink.baseline_bytes_per_device_day {baseline.air} bytes")
    print(f"over TLS with keepalive_s {SHORT_NAT['keepalive_s']}: {short_nat.air} B/day, "
          f"{short_nat.count(UP, 'PUBLISH')} publishes, {short_nat.count(UP, 'PINGREQ')} pings, "
          f"{short_nat.tally.sessions} sessions")
    print(f"FIGURE uplink.tls_bytes_per_device_day {tls.air} bytes")
    print(f"FIGURE uplink.tls_short_nat_bytes_per_device_day {short_nat.air} bytes")


if __name__ == "__main__":
    main()
