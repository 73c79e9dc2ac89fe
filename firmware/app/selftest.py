# The console's selftest: each part checked in turn while the application runs (the usage
# task goes on counting between the checks' waits), then the diagnosis codes from the checks
# and from the running state (run's health: an app.health.Health), explained from the one
# table (app.diagnoses, through app.health.explained).
# Loaded for one selftest and let go after it.
import os
import time

from app import parts, store
from app.health import broker_code, explained, sensor_code
from micropython import const

PATH = "/selftest.tmp"
_AT_TIMEOUT_MS = const(3000)  # a modem that answers does so at once
# What a temperature sensor can read where the appliance works; beyond it the sensor is wrong.
_TEMP_MIN = const(-20)
_TEMP_MAX = const(85)


async def run(health):
    checks = {}
    codes = []
    _sensors(checks, codes)
    await _modem(checks, codes)
    _flash(checks, codes)
    _broker(checks, codes)
    for code in health.codes():
        if code not in codes:
            codes.append(code)
    return {"passed": not codes, "checks": checks, "diagnosis": explained(codes)}


def _sensors(checks, codes):
    sensors = parts.get("sensors")
    if sensors is None:
        checks["sensors"] = "none on this board"
        return
    for name in ("sht", "supply"):  # fresh reads; the usage task keeps the rest fresh
        d = sensors.get(name)
        if d is not None:
            d.read()
    for name, d in sensors.drivers.items():
        fault = d.fault
        values = d.values
        if not fault and name == "sht" and not _TEMP_MIN <= values.get("t", 0) <= _TEMP_MAX:
            fault = "range"
        checks["sensor " + name] = fault or "ok"
        if fault:
            codes.append(sensor_code(name, fault))


async def _modem(checks, codes):
    link = parts.get("modem")
    if link is None:
        checks["modem"] = "none on this board"
        return
    from app.modem.at import ATError, ATTimeout

    try:
        await link.modem.ch.command("AT", _AT_TIMEOUT_MS)
        checks["modem"] = "answers"
    except ATTimeout:
        checks["modem"] = "does not answer"
        codes.append("MODEM_HUNG")
        return
    except ATError as e:
        checks["modem"] = "error: %s" % e
    reg = link.status.get("registration") or {}
    checks["registration"] = reg.get("state") or "unknown"


def _flash(checks, codes):
    # A write through the store, read back and removed: what the counter's journal needs.
    stamp = {"t": time.time()}
    try:
        store.write_json(PATH, stamp)
        ok = store.read_json(PATH, None) == stamp
        os.remove(PATH)
    except (store.StoreError, OSError) as e:
        ok = False
        checks["flash"] = "error: %s" % e
    if ok:
        checks["flash"] = "writable"
    else:
        checks.setdefault("flash", "read back differs")
        codes.append("FLASH_RO")


def _broker(checks, codes):
    uplink = parts.get("uplink")
    if uplink is None:
        checks["broker"] = "no uplink configured"
        return
    st = uplink.status
    if st.get("state") == "connected" or st.get("connects"):
        checks["broker"] = "reached (%d sessions this boot)" % st.get("connects", 0)
        return
    checks["broker"] = "not reached: %s" % (st.get("last_error") or st.get("state"))
    link = parts.get("modem")
    if link is not None and link.status.get("state") == "connected":
        codes.append(broker_code(st.get("last_error")))
