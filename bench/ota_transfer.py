"""ota.*: an update over the air, end to end: a real Mosquitto, the fleet's side
(musket.ota.transfer), and the reference board under MicroPython at its heap on the modem
model's good LTE-M network (100 ms each way), from the offer to the new version confirmed.

- ota.update_seconds: virtual seconds from the offer to the confirmation, a full bundle;
- ota.full_air_bytes, ota.delta_air_bytes: bytes over the air (both ways, TCP/IP included,
  as the modem model counts them) from the offer to the reset that installs, for a full
  bundle and for a delta of a one-line change in one module (the reboot, the new session
  and the confirmation after it cost the same for every bundle: about 3 KB);
- ota.delta_ratio: the delta's air bytes over the full bundle's (target 0.03 or less);
- ota.resume_waste_bytes: bytes the server sent twice for a full bundle whose download the
  network cut three times and a power-on reboot interrupted (target: no more than the
  chunks in flight at those moments);
- ota.image_update_seconds, ota.image_air_bytes: the same as the first two for an image
  update as large as MicroPython's ESP32 firmware (1.6 MB, about 1.04 MB compressed), on a
  device built with the OTA layout: downloaded into the other app slot, inflated there,
  booted on trial and confirmed."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "uplink"))  # the test broker and the device's files
sys.path.insert(1, str(ROOT / "tests"))  # the update fixtures

from conftest import DEVICES, SERVICE_PASSWORD, SERVICE_USER, Mosquitto, device_files  # noqa: E402
from image_updates import full_size_bundle  # noqa: E402
from updates import BOARD, marked_firmware, trusting  # noqa: E402

from musket import firmware  # noqa: E402
from musket.ota import release, transfer  # noqa: E402
from musket.ota.keys import KeyStore  # noqa: E402
from musket_sim import VirtualDevice  # noqa: E402
from musket_sim.scenario import load_scenario  # noqa: E402

INTERPRETER = "micropython"
CONFIRMED = re.compile(r"^\[\s*(\d+\.\d+)\] I ota: version \S+ confirmed", re.M)
OLD, NEW = '"connected (session %s)"', '"connected (session %s), this one"'
LINK_DROPS = (325, 345, 365)  # the download starts at about 312 s


def device(folder: Path, keys: KeyStore, port: int, scenario: dict,
           ota: bool = False) -> VirtualDevice:
    unit = VirtualDevice(BOARD, folder, interpreter=INTERPRETER, modem=load_scenario(scenario),
                         ota=ota)
    unit.create_flash({**device_files("dev-a", port), **trusting(keys)})
    unit.run(300)  # the session and its subscription, kept by the broker
    return unit


def update(unit: VirtualDevice, broker: Mosquitto, data: bytes, campaign: str,
           first_run_s: int = 1800) -> tuple[transfer.DeviceUpdate, float, int]:
    """Offers `data` and runs the device until it confirmed. -> (the server's record, virtual
    seconds from the offer to the confirmation, air bytes of the download: from the offer to
    the reset that ends it, the same for every bundle after that)."""
    server = transfer.BundleServer("127.0.0.1", broker.port, SERVICE_USER, SERVICE_PASSWORD)
    offered_us = unit.virtual_us
    air = 0
    confirmed_us = None
    try:
        server.offer("dev-a", campaign, "1.1.0", data)
        # The runs that download end at the boot that ends (a cut-short run, or the reset
        # that installs); the last one runs on to the confirmation.
        for span, boots in ((first_run_s, 1), (1800, 1), (1800, None)):
            log_start = unit.console_log.stat().st_size
            result = unit.run(span, max_boots=boots)
            if boots:
                air += sum(m["air_up"] + m["air_down"] for m in result.modem)
                if server.updates["dev-a"].state == "downloaded" or \
                        server.wait(["dev-a"], ("downloaded",), 2):
                    continue
            log = unit.console_log.read_bytes()[log_start:].decode(errors="replace")
            found = CONFIRMED.search(log)
            if found:
                # Console times are the boot's own: the boot it happened in gives the start.
                boot = log[:found.start()].count(" I boot: boot #") - 1
                confirmed_us = (result.boot_log[boot].start_virtual_us
                                + int(float(found.group(1)) * 1e6))
                break
        server.wait(["dev-a"], ("confirmed",), 10)
    finally:
        server.close()
    record = server.updates["dev-a"]
    if record.state != "confirmed" or confirmed_us is None:
        raise SystemExit(f"the update did not confirm: {record.state} {record.reason}")
    return record, (confirmed_us - offered_us) / 1e6, air


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        keys = KeyStore(folder / "keys")
        keys.generate()
        full = release.build_release(keys, version="1.1.0", boards=[BOARD],
                                     firmware_root=marked_firmware(folder / "new"))
        base = folder / "app-1.0.0.mkot"
        base.write_bytes(release.build_release(keys, version="1.0.0", boards=[BOARD]).data)
        fixed = folder / "fixed" / "firmware"
        shutil.copytree(firmware.firmware_dir(), fixed,
                        ignore=shutil.ignore_patterns("__pycache__"))
        service = fixed / "app" / "uplink" / "service.py"
        service.write_text(service.read_text().replace(OLD, NEW, 1))
        delta = release.build_release(keys, version="1.1.0", boards=[BOARD],
                                      firmware_root=fixed, base=release.load_base(base, keys))
        creds = {**DEVICES, SERVICE_USER: SERVICE_PASSWORD}
        broker = Mosquitto(folder / "broker", creds)
        try:
            _, full_s, full_air = update(device(folder / "full", keys, broker.port, {}),
                                         broker, full.data, "full")
            _, delta_s, delta_air = update(device(folder / "delta", keys, broker.port, {}),
                                           broker, delta.data, "delta")
            drops = {"events": [{"at": at, "drop_data": True} for at in LINK_DROPS]}
            resumed, _, _ = update(device(folder / "resume", keys, broker.port, drops),
                                   broker, full.data, "resume", first_run_s=90)
            image_data, _ = full_size_bundle(keys, folder)
            _, image_s, image_air = update(
                device(folder / "image", keys, broker.port, {}, ota=True), broker, image_data,
                "image", first_run_s=3600)
        finally:
            broker.stop()
    waste = resumed.bytes_served - len(full.data)
    print(f"full bundle {len(full.data):,} bytes: confirmed {full_s:.0f} virtual s after the "
          f"offer, {full_air:,} air bytes; delta bundle {len(delta.data):,} bytes: "
          f"{delta_s:.0f} s, {delta_air:,} air bytes")
    print(f"resumed through {len(LINK_DROPS)} link drops and a reboot: "
          f"{resumed.resent_chunks} chunk(s) sent twice, {waste} bytes")
    print(f"image bundle {len(image_data):,} bytes: confirmed {image_s:.0f} virtual s after "
          f"the offer, {image_air:,} air bytes")
    print(f"FIGURE ota.update_seconds {full_s:.0f} seconds")
    print(f"FIGURE ota.full_air_bytes {full_air} bytes")
    print(f"FIGURE ota.delta_air_bytes {delta_air} bytes")
    print(f"FIGURE ota.delta_ratio {delta_air / full_air:.4f} ratio")
    print(f"FIGURE ota.resume_waste_bytes {waste} bytes")
    print(f"FIGURE ota.image_update_seconds {image_s:.0f} seconds")
    print(f"FIGURE ota.image_air_bytes {image_air} bytes")


if __name__ == "__main__":
    main()
