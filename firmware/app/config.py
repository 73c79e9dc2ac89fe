"""Device configuration: a schema as data, validation, and power-safe load and save.

The config file is a store record holding a JSON object with only the keys that differ from
DEFAULTS, so a firmware update that changes a default reaches every device that never
overrode it. Bad stored data never stops the device: a damaged file, unknown keys and invalid
values are reported as problems and the defaults stand in for them.

load() returns a fresh dict each time; DEFAULTS and SCHEMA are never edited at run time.
"""

from app import store
from app.errors import FirmwareError

DEFAULT_PATH = "/config.json"

# key: (default, type, min, max, choices, owner). For an int, min and max bound the value; for
# a str they bound its length. None means no bound. Problems quote int values and choices but
# only the length of a free-form string, which may hold something private. The owner is the
# running part (app.parts) that takes a changed value at once, through its configure(key,
# value); None: the value is read only at boot, so a change applies after a reboot.
SCHEMA = {
    # How often a reading is taken; counter events go out at the next one. At least a minute,
    # at most a day.
    "report_interval_s": (900, int, 60, 86400, None, "readings"),
    # MQTT keepalive: idle this long, the device pings. Over the broker's 1.5 x it counts the
    # device gone. 16 bits on the wire. The default profile sends a message at least every
    # 2 h (a batch of readings), so the messages themselves keep the session and the carrier's
    # NAT entry alive and no ping is sent; 7440 s is RFC 5382's floor for a NAT's idle TCP
    # timeout (2 h 4 min). A carrier whose NAT drops idle TCP sooner needs a keepalive under
    # its timeout: when it runs out, the readings waiting for their batch go instead of a ping
    # (which costs about 256 air bytes over TLS for nothing: docs/uplink.md).
    "keepalive_s": (7440, int, 60, 65535, None, "uplink"),
    # Readings per telemetry message: a message goes out once this many wait, so readings reach
    # the broker up to batch_size x report_interval_s after they are taken (2 h by default);
    # counter events go with the next reading, and the readings that wait go with them. Each
    # message costs about 270 air bytes over TLS besides its payload: a smaller batch is
    # fresher and dearer.
    "batch_size": (8, int, 1, 64, None, "uplink"),
    # The MQTT broker (written at provisioning); empty: no uplink.
    "mqtt_host": ("", str, 0, 64, None, None),
    "mqtt_port": (1883, int, 1, 65535, None, None),
    # 1: TLS with the broker's certificate checked against /ca.pem.
    "mqtt_tls": (0, int, 0, 1, None, None),
    # The device's status message (health, contract A in docs/uplink.md) goes with each
    # session's CONNECT and again with the first telemetry after this long: 12 h by default
    # (each one more a day costs about 440 bytes over TLS), from 10 min to a week.
    "health_interval_s": (43200, int, 600, 604800, None, "uplink"),
    # 1: telemetry as JSON instead of CBOR, for debugging (several times the bytes).
    "telemetry_json": (0, int, 0, 1, None, "uplink"),
    "log_level": ("info", str, None, None, ("debug", "info", "warning", "error"), "log"),
    # Watchdog timeout: long enough to boot and to ride out a slow flash write.
    "wdt_timeout_ms": (30000, int, 5000, 600000, None, None),
    # Alive message when there is no usage to report: every 5 min to every week.
    "heartbeat_s": (3600, int, 300, 604800, None, None),
    # Empty: the network's default APN. 3GPP TS 23.003 caps an APN at 100 octets.
    "apn": ("", str, 0, 100, None, None),
    # Written at provisioning.
    "device_id": ("", str, 0, 64, None, None),
    # Usage detection (app/usage.py), per product: a brew is the current sensor above
    # brew_ma for brew_min_s; a dispense ends dispense_gap_s after its last flow pulse and
    # counts if it had dispense_min_pulses (fewer is a drip or meter jitter).
    "brew_ma": (1500, int, 50, 40000, None, "usage"),
    "brew_min_s": (10, int, 1, 3600, None, "usage"),
    "dispense_gap_s": (3, int, 1, 60, None, "usage"),
    "dispense_min_pulses": (20, int, 1, 100000, None, "usage"),
    # A version an update installed confirms itself when the broker acknowledges a session
    # within this long after its boot; otherwise the previous version comes back (docs/ota.md).
    "ota_trial_s": (1800, int, 60, 86400, None, None),
    # Service rules (app/counter.py): "counter/N:action" at every N, "counter@N:action" once
    # at N; ";" between rules.
    "service_rules": ("brews/200:reorder-beans;litres@1000:replace-filter", str, 0, 240, None,
                      None),
}

DEFAULTS = {key: spec[0] for key, spec in SCHEMA.items()}


class ConfigError(FirmwareError):
    """A config to be saved has invalid values; the message lists the problems."""


def _problem(key, value):
    """Return why ``value`` is not valid for ``key``, or None if it is."""
    spec = SCHEMA.get(key)
    if spec is None:
        return "%r: unknown key" % (key,)
    _, kind, lo, hi, choices, _ = spec
    if type(value) is not kind:  # so True is not an int and 900.0 is not either
        return "%s: expected %s, got %s" % (key, kind.__name__, type(value).__name__)
    if kind is str:
        what, size = "length", len(value)
    else:
        what, size = "value", value
    if lo is not None and size < lo:
        return "%s: %s %d is below the minimum %d" % (key, what, size, lo)
    if hi is not None and size > hi:
        return "%s: %s %d is above the maximum %d" % (key, what, size, hi)
    if choices is not None and value not in choices:
        return "%s: %r is not one of %s" % (key, value, ", ".join(choices))
    return None


def validate(changes):
    """Check ``changes`` against SCHEMA; return (dict of the valid entries, list of problems)."""
    if not isinstance(changes, dict):
        return {}, ["config: expected an object, got %s" % type(changes).__name__]
    ok = {}
    problems = []
    for key in sorted(changes, key=str):
        problem = _problem(key, changes[key])
        if problem is None:
            ok[key] = changes[key]
        else:
            problems.append(problem)
    return ok, problems


def owner(key):
    """The name of the running part that applies a change of ``key`` at once, or None when the
    change applies after a reboot."""
    return SCHEMA[key][5]


def load(path=DEFAULT_PATH):
    """Return (config, problems): DEFAULTS overlaid with the valid keys stored at ``path``.

    A missing file gives the defaults with no problems. A damaged or unreadable file, unknown
    keys and invalid values are listed in problems and replaced by defaults; never raises.
    """
    config = dict(DEFAULTS)
    ok, problems = stored(path)
    config.update(ok)
    return config, problems


def stored(path=DEFAULT_PATH):
    """Return (the valid keys stored at ``path``, problems), as load() does but without the
    defaults: a change to the stored config needs no dict of every key (a downlink command
    makes one while the heap is busiest)."""
    try:
        kept = store.read_json(path, {})
    except store.StoreError as e:
        return {}, ["config: %s; using defaults" % e]
    return validate(kept)


def save(path, config):
    """Validate ``config`` and store the keys that differ from DEFAULTS at ``path``.

    Raises ConfigError listing every problem (and writes nothing) if any value is invalid,
    and store.StoreError if the flash write fails.
    """
    ok, problems = validate(config)
    if problems:
        raise ConfigError("; ".join(problems))
    store.write_json(path, {key: value for key, value in ok.items() if value != DEFAULTS[key]})
