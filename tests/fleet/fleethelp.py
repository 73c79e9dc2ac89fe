"""Helpers for the fleet service's tests: the registry's seed, telemetry made by the firmware's
own codec, and the uplink tests' broker (tests/uplink/conftest.py, loaded under its own name so
that the two conftest modules do not clash)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

from musket.identity import luhn_check_digit
from musket.registry import Actor, binding

TESTS = Path(__file__).resolve().parent.parent
FIRMWARE = TESTS.parent / "firmware"
ACTOR = Actor("fleet-tests", "ana")
PLAN = "iot-eu-10mb"
DEVICES = ["dev-a", "dev-b", "dev-c"]
SPARE_SIMS = 10


def iccid(n: int) -> str:
    body = f"89490{n:013d}"
    return body + luhn_check_digit(body)


def device_iccid(device_id: str) -> str:
    return iccid(DEVICES.index(device_id) + 1)


def spare_iccids() -> list[str]:
    return [iccid(100 + n) for n in range(SPARE_SIMS)]


def seed(registry, folder: Path) -> None:
    """Imports the SIMs, and binds one to each of DEVICES (device IDs chosen, not drawn)."""
    csv_path = folder / "fleet-sims.csv"
    rows = [f"{device_iccid(d)},{PLAN},inventory" for d in DEVICES]
    rows += [f"{i},{PLAN},inventory" for i in spare_iccids()]
    csv_path.write_text("ICCID,plan,state\n" + "\n".join(rows) + "\n")
    registry.import_sims(csv_path, ACTOR)
    for n, device_id in enumerate(DEVICES):
        unit = binding.Unit(iccid=device_iccid(device_id), imei=_imei(n),
                            imsi="26201438932312%d" % n, chip_id="240ac40000%02d" % n,
                            board="esp32-sim7080g")
        with registry.transaction() as conn:
            plan = binding.BindingPlan(device_id, True, None, False, None)
            binding.apply(conn, plan, unit, ACTOR)


def _imei(n: int) -> str:
    body = f"86971505399{n:03d}"
    return body + luhn_check_digit(body)


def _load(name: str, path: Path):
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    # Compiled from text: the codec's first line ("Telemetry encoding: CBOR") reads as a
    # source-encoding declaration to CPython's byte loader.
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module


def codec():
    """The firmware's telemetry codec (app/uplink/codec.py), run under CPython."""
    return _load("firmware_codec", FIRMWARE / "app" / "uplink" / "codec.py")


def broker_module():
    """tests/uplink/conftest.py: its Mosquitto, credentials and device files."""
    return _load("uplink_broker", TESTS / "uplink" / "conftest.py")


def broker_users() -> dict[str, str]:
    m = broker_module()
    users = dict(m.DEVICES)
    users[m.SERVICE_USER] = m.SERVICE_PASSWORD
    return users


def telemetry(mseq: int, events=(), readings=(), t0: int = 1_796_000_000,
              as_json: bool = False) -> bytes:
    """A telemetry message as the device makes it. events: (seq, name, total) triples, one
    use each; readings: (rseq, {key: value}) pairs."""
    c = codec()
    evs = [(seq, t0 + i, "use", name, 1, total, None)
           for i, (seq, name, total) in enumerate(events)]
    rds = [(rseq, c.reading_record(t0 + 60 * i, values))
           for i, (rseq, values) in enumerate(readings)]
    payload, _, _ = c.encode(mseq, t0, evs, rds, 448, as_json)
    return bytes(payload)


def status(**fields) -> bytes:
    """A status map (contract A) in CBOR, made with the firmware's CBOR encoder."""
    out = bytearray()
    raw = {"on": 1, "v": 1}
    raw.update(fields)
    codec().cbor(out, raw)
    return bytes(out)
