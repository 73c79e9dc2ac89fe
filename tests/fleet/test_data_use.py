"""Contract C on the device: a day of the whole firmware against a real Mosquitto, under both
interpreters. The bytes the device says it used (its status section "data", estimated at the
socket layer) agree within 5 % with the modem model's air-byte count, which is what the
carrier bills; the totals reach flash; and the carrier's file the simulator writes from the
model holds the same air bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from checksuite import call
from fleethelp import broker_module

from musket_sim import carrier
from musket_sim.scenario import load_scenario

HOUR = 3600
CHECKS = Path(__file__).parent / "checks"
EVENTS_APP = Path(__file__).parent.parent / "uplink" / "checks" / "app_with_events.py"
TOLERANCE = 0.05
DAY_SCENARIO = {"events": [{"at": 6 * HOUR, "drop_data": True},
                           {"at": 14 * HOUR, "drop_data": True}]}


@pytest.mark.slow
def test_a_day_of_device_reported_bytes_is_within_5_percent_of_the_air(
        make_device, mosquitto, tmp_path):
    m = broker_module()
    device = make_device(device_modules=[EVENTS_APP, CHECKS / "app_with_data.py"],
                         modem=load_scenario(DAY_SCENARIO),
                         files=m.device_files("dev-a", mosquitto.port))
    result = device.run(24 * HOUR, script=call("app_with_data.start", 600, 1200,
                                               22 * HOUR))
    lines = [line.split() for line in result.script_output.splitlines()
             if line.startswith("DATA ")]
    assert len(lines) > 100, result.script_output[-2000:]
    tx, rx = int(lines[-1][1]), int(lines[-1][2])
    air_up = sum(b["air_up"] for b in result.modem)
    air_down = sum(b["air_down"] for b in result.modem)
    assert air_up > 10_000, result.modem  # a day of sessions, telemetry, acknowledgements
    device_total, air_total = tx + rx, air_up + air_down
    print(f"\ndevice {tx} up {rx} down; air {air_up} up {air_down} down; "
          f"{(device_total - air_total) / air_total:+.2%}")
    assert abs(device_total - air_total) <= TOLERANCE * air_total
    assert abs(tx - air_up) <= TOLERANCE * air_up
    assert abs(rx - air_down) <= TOLERANCE * air_down
    # The totals reached flash (at most 6 h ago): an atomic
    # record, no more than the last totals printed.
    files = device.read_files()
    record = files.get("datause.json") or files.get("/datause.json")
    assert record is not None and record[:4] == b"MSKR", sorted(files)
    saved = json.loads(record[14:])
    assert 0 < saved["tx"] <= tx and 0 < saved["rx"] <= rx
    # The carrier's file from the same model: one SIM, one day, the air bytes.
    path = tmp_path / "usage.csv"
    rows = carrier.billed_rows(result.modem)
    assert carrier.write_usage_csv(path, rows) == len(rows) >= 1
    assert sum(n for _, _, n in rows) == air_total
    assert path.read_text().startswith("iccid,day,bytes\n")
    assert lines[-1][3] == "0"  # the carrier never stopped its data


@pytest.mark.slow
def test_a_data_limit_pause_is_seen_and_reported_by_the_device(make_device, mosquitto):
    m = broker_module()
    limit = 6000  # bytes: a few hours of the default profile
    device = make_device(device_modules=[EVENTS_APP, CHECKS / "app_with_data.py"],
                         modem=load_scenario({"data_limit_bytes": limit}),
                         files=m.device_files("dev-a", mosquitto.port))
    result = device.run(12 * HOUR, script=call("app_with_data.start", 600, 1200, 11 * HOUR))
    lines = [line.split() for line in result.script_output.splitlines()
             if line.startswith("DATA ")]
    assert lines, result.script_output[-2000:]
    billed = sum(b["air_up"] + b["air_down"] for b in result.modem)
    # The carrier stopped the data at the cap (what was in flight then still counts) ...
    assert limit <= billed < limit + 1500, result.modem
    # ... and the device says so in its status section, with its totals near the carrier's.
    tx, rx, paused = (int(x) for x in lines[-1][1:4])
    assert paused == 1, lines[-5:]
    assert abs(tx + rx - billed) <= TOLERANCE * billed
    log = device.console_log.read_text()
    assert "the carrier stopped this SIM's data: Requested service option not subscribed" \
        in log, log[-3000:]
