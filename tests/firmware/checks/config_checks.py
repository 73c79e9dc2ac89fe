"""Checks for app.config that run unchanged under MicroPython and CPython.

Each ``check_<name>`` runs in an empty working folder (tests/device/checkrun.py runs them).
"""

import os

from app import config, store
from app.errors import FirmwareError
from checkhelp import expect, raises, raw_read, raw_write

PATH = "config.json"


def run_check(fn):
    """Each check starts in an empty folder (see tests/device/checkrun.py)."""
    for name in os.listdir():
        os.remove(name)
    fn()

# (key, bad value, text the problem must contain)
BAD_VALUES = (
    ("report_interval_s", 59, "report_interval_s: value 59 is below the minimum 60"),
    ("report_interval_s", 86401, "above the maximum 86400"),
    ("keepalive_s", 900.0, "keepalive_s: expected int, got float"),
    ("batch_size", True, "batch_size: expected int, got bool"),
    ("batch_size", "8", "expected int, got str"),
    ("log_level", "loud", "log_level: 'loud' is not one of debug, info, warning, error"),
    ("log_level", 3, "log_level: expected str, got int"),
    ("wdt_timeout_ms", 0, "wdt_timeout_ms: value 0 is below"),
    ("heartbeat_s", None, "heartbeat_s: expected int, got NoneType"),
    ("apn", "x" * 101, "apn: length 101 is above the maximum 100"),
    ("device_id", ["a"], "device_id: expected str, got list"),
    ("colour", "red", "'colour': unknown key"),
)


def check_defaults():
    expect(sorted(config.DEFAULTS) == sorted(config.SCHEMA), "a default for every schema key")
    want = {"report_interval_s": 900, "keepalive_s": 7440, "batch_size": 8,
            "mqtt_host": "", "mqtt_port": 1883, "mqtt_tls": 0, "telemetry_json": 0,
            "log_level": "info", "wdt_timeout_ms": 30000, "heartbeat_s": 3600,
            "apn": "", "device_id": "",
            "brew_ma": 1500, "brew_min_s": 10, "dispense_gap_s": 3, "dispense_min_pulses": 20,
            "ota_trial_s": 1800, "health_interval_s": 43200,
            "service_rules": "brews/200:reorder-beans;litres@1000:replace-filter"}
    expect(config.DEFAULTS == want, "default values")
    expect(config.validate(config.DEFAULTS) == (config.DEFAULTS, []), "defaults are valid")
    cfg, problems = config.load(PATH)
    expect(cfg == config.DEFAULTS and problems == [], "missing file gives the defaults")
    cfg["batch_size"] = 1
    expect(config.DEFAULTS["batch_size"] == want["batch_size"],
           "load returns a copy, never DEFAULTS itself")


def check_save_and_load():
    cfg, _ = config.load(PATH)
    cfg["apn"] = "iot.example"
    cfg["report_interval_s"] = 3600
    config.save(PATH, cfg)
    expect(store.read_json(PATH) == {"apn": "iot.example", "report_interval_s": 3600},
           "only the keys that differ from the defaults are stored")
    loaded, problems = config.load(PATH)
    expect(loaded == cfg and problems == [], "roundtrip")
    config.save(PATH, config.DEFAULTS)
    expect(store.read_json(PATH) == {}, "all defaults store an empty object")


def check_invalid_values():
    for key, value, text in BAD_VALUES:
        good = {"heartbeat_s": 600} if key == "batch_size" else {"batch_size": 16}
        changes = dict(good)
        changes[key] = value
        ok, problems = config.validate(changes)
        expect(ok == good, f"{key}={value!r}: only the valid key kept")
        expect(len(problems) == 1 and text in problems[0], f"{key}={value!r}: {problems}")
    ok, problems = config.validate({"apn": "secret" * 20})
    expect("secret" not in problems[0], "a bad string is described, not quoted")
    ok, problems = config.validate(["batch_size", 8])
    expect(ok == {} and problems == ["config: expected an object, got list"], "not a dict")
    bad = {key: value for key, value, _ in BAD_VALUES}  # one bad value per key
    ok, problems = config.validate(bad)
    expect(ok == {} and len(problems) == len(bad), "every problem reported, not the first")


def check_invalid_stored():
    store.write_json(PATH, {"batch_size": 0, "log_level": "debug", "colour": "red",
                            "keepalive_s": 600})
    cfg, problems = config.load(PATH)
    expect(cfg["log_level"] == "debug" and cfg["keepalive_s"] == 600, "valid keys kept")
    expect(cfg["batch_size"] == config.DEFAULTS["batch_size"] and "colour" not in cfg,
           "bad and unknown keys dropped")
    expect(len(problems) == 2, f"one problem per bad key: {problems}")
    expect("batch_size: value 0 is below the minimum 1" in problems, f"bad value: {problems}")
    expect("'colour': unknown key" in problems, f"unknown key: {problems}")
    store.write_json(PATH, [1, 2])
    cfg, problems = config.load(PATH)
    expect(cfg == config.DEFAULTS and "expected an object" in problems[0], "not an object")


def check_damaged_file():
    for content in (b"", b"{\"batch_size\": 4}", b"MSKR\x01\x00\x09\x00"):
        raw_write(PATH, content)
        cfg, problems = config.load(PATH)
        expect(cfg == config.DEFAULTS, f"{content!r}: defaults")
        expect(len(problems) == 1 and PATH in problems[0], f"{content!r}: {problems}")
    store.write_record(PATH, b"{\"batch_size\": ")
    cfg, problems = config.load(PATH)
    expect(cfg == config.DEFAULTS and "JSON" in problems[0], f"bad JSON: {problems}")


def check_save_rejects_invalid():
    config.save(PATH, {"batch_size": 4})
    before = raw_read(PATH)
    bad = dict(config.DEFAULTS)
    bad["batch_size"] = 1000
    bad["log_level"] = "loud"
    msg = raises(config.ConfigError, config.save, PATH, bad)
    expect("batch_size" in msg and "log_level" in msg, "every problem named: " + msg)
    expect(isinstance(config.ConfigError(""), FirmwareError), "a FirmwareError")
    expect(raw_read(PATH) == before, "nothing written")
    expect(sorted(os.listdir()) == [PATH], "no .tmp left")


def check_owners():
    # Who applies a change at once (the running part a command hands the key to); None: the
    # key is read at boot only, and a change applies after a reboot.
    want = {"report_interval_s": "readings", "keepalive_s": "uplink", "batch_size": "uplink",
            "telemetry_json": "uplink", "health_interval_s": "uplink", "log_level": "log",
            "brew_ma": "usage",
            "brew_min_s": "usage", "dispense_gap_s": "usage", "dispense_min_pulses": "usage"}
    for key in config.SCHEMA:
        expect(config.owner(key) == want.get(key), "%s: owner %r" % (key, config.owner(key)))

