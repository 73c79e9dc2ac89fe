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

# key: (default, type, min, max, choices). For an int, min and max bound the value; for a
# str they bound its length. None means no bound. Problems quote int values and choices but
# only the length of a free-form string, which may hold something private.
SCHEMA = {
    # How often usage is reported: at least a minute, at most a day.
    "report_interval_s": (900, int, 60, 86400, None),
    # MQTT keepalive; the protocol carries it as 16 bits.
    "keepalive_s": (1200, int, 60, 65535, None),
    # Queued messages sent per uplink session.
    "batch_size": (8, int, 1, 64, None),
    "log_level": ("info", str, None, None, ("debug", "info", "warning", "error")),
    # Watchdog timeout: long enough to boot and to ride out a slow flash write.
    "wdt_timeout_ms": (30000, int, 5000, 600000, None),
    # Alive message when there is no usage to report: every 5 min to every week.
    "heartbeat_s": (3600, int, 300, 604800, None),
    # Empty: the network's default APN. 3GPP TS 23.003 caps an APN at 100 octets.
    "apn": ("", str, 0, 100, None),
    # Written at provisioning.
    "device_id": ("", str, 0, 64, None),
}

DEFAULTS = {key: spec[0] for key, spec in SCHEMA.items()}


class ConfigError(FirmwareError):
    """A config to be saved has invalid values; the message lists the problems."""


def _problem(key, value):
    """Return why ``value`` is not valid for ``key``, or None if it is."""
    spec = SCHEMA.get(key)
    if spec is None:
        return "%r: unknown key" % (key,)
    _, kind, lo, hi, choices = spec
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


def load(path=DEFAULT_PATH):
    """Return (config, problems): DEFAULTS overlaid with the valid keys stored at ``path``.

    A missing file gives the defaults with no problems. A damaged or unreadable file, unknown
    keys and invalid values are listed in problems and replaced by defaults; never raises.
    """
    config = dict(DEFAULTS)
    try:
        stored = store.read_json(path, {})
    except store.StoreError as e:
        return config, ["config: %s; using defaults" % e]
    ok, problems = validate(stored)
    config.update(ok)
    return config, problems


def save(path, config):
    """Validate ``config`` and store the keys that differ from DEFAULTS at ``path``.

    Raises ConfigError listing every problem (and writes nothing) if any value is invalid,
    and store.StoreError if the flash write fails.
    """
    ok, problems = validate(config)
    if problems:
        raise ConfigError("; ".join(problems))
    store.write_json(path, {key: value for key, value in ok.items() if value != DEFAULTS[key]})
