"""console.*: the firmware's heap with the technician's console in use, under MicroPython at
the board's heap, with the uplink's TLS session up (a real Mosquitto on loopback, a test CA).

A reference board runs the whole firmware (the "day" usage scenario, the good network) with its
console on a pty, paced as a console needs; once its TLS session is up, a technician's session
asks status, selftest, signal, log, counters, sensors and config get, three times over. A
second unit runs as long with nobody on its console.

- console.heap_peak_bytes: the most heap the firmware held at the sim's idle samples during the
  run with the console session (MicroPython, the board's heap);
- console.idle_heap_peak_bytes: the same for the unit nobody talked to;
- console.heap_free_min_bytes: the least heap free the `status` command saw, after a collection,
  with the console's command module loaded;
- console.heap_bytes: the board's heap, for scale;
- console.out_of_memory_answers: answers "out of memory now: ask again" (each asked again, up
  to ATTEMPTS times);
- console.unanswered_requests: of the session's 21 requests, those still refused after
  ATTEMPTS asks."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "uplink"))  # the test CA, broker and device files
sys.path.insert(1, str(ROOT / "tests" / "console_device"))  # the console driver
sys.path.insert(2, str(ROOT / "tests"))  # checksuite, which the uplink tests' modules import

from conftest import DEVICES, SERVICE_PASSWORD, SERVICE_USER, Mosquitto, device_files  # noqa: E402
from consoledev import ConsoleDevice  # noqa: E402
from test_tls import make_test_pki  # noqa: E402

from musket_sim import VirtualDevice  # noqa: E402
from musket_sim.scenario import load_scenario  # noqa: E402
from musket_sim.usage_scenario import load_usage  # noqa: E402

BOARD = "esp32-sim7080g"
SPEED = 5
REQUESTS = ("status", "selftest", "signal", "log", "counters", "sensors", "config get")
ROUNDS = 3
CONNECT_TIMEOUT_S = 120
ATTEMPTS = 3  # a request answered "out of memory now" is asked again, this often at most


def _unit(workdir: Path, files: dict) -> ConsoleDevice:
    device = VirtualDevice(BOARD, workdir, interpreter="micropython",
                           modem=load_scenario("good"), usage=load_usage("day"))
    device.create_flash(files)
    con = ConsoleDevice(device, 24 * 3600, SPEED).start()
    con.wait_for("online", lambda s: (s["uplink"] or {}).get("state") == "connected",
                 CONNECT_TIMEOUT_S)
    return con


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="musket-bench-console-") as tmp:
        tmp_path = Path(tmp)
        pki = make_test_pki(tmp_path / "pki")
        creds = dict(DEVICES)
        creds[SERVICE_USER] = SERVICE_PASSWORD
        broker = Mosquitto(tmp_path / "broker", creds, extra=pki.mosquitto_lines())
        try:
            files = device_files("dev-a", broker.port, mqtt_tls=1)
            files["ca.pem"] = pki.ca.read_bytes()
            con = _unit(tmp_path / "busy", files)
            started = time.monotonic()
            free = []
            refused = 0
            unanswered = 0
            for _ in range(ROUNDS):
                for request in REQUESTS:
                    for _attempt in range(ATTEMPTS):
                        reply = con.ask(request)
                        if reply["ok"] or "out of memory" not in reply["error"]:
                            break
                        refused += 1  # the technician asks again
                        time.sleep(1)
                    if not reply["ok"]:
                        unanswered += 1
                    elif request == "status":
                        free.append(reply["result"]["heap"]["free"])
            busy_wall = time.monotonic() - started
            busy = con.stop()
            con.device.close()
            idle = _unit(tmp_path / "idle", files)
            time.sleep(busy_wall)
            quiet = idle.stop()
            idle.device.close()
        finally:
            broker.stop()
    for result in (busy, quiet):
        if result.errors:
            raise SystemExit(f"the unit reported errors: {result.errors}")
    print(f"FIGURE console.heap_peak_bytes {busy.heap_peak_bytes} bytes")
    print(f"FIGURE console.idle_heap_peak_bytes {quiet.heap_peak_bytes} bytes")
    print(f"FIGURE console.heap_free_min_bytes {min(free) if free else 0} bytes")
    print(f"FIGURE console.heap_bytes {con.device.heap} bytes")
    print(f"FIGURE console.out_of_memory_answers {refused} requests")
    print(f"FIGURE console.unanswered_requests {unanswered} requests")


if __name__ == "__main__":
    main()
