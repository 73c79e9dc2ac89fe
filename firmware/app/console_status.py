# The console's status (app.console_cmds' plan), loaded for a status request and let go
# after it: every section of the device's status, health and diagnosis, written as it is made.
from app import parts
from app.console_reads import counters, sensors


def status():
    # The sections as pairs, each made as the answer reaches it and garbage after: no map of
    # the whole status is ever in the heap. The modules they need are loaded first, so that
    # a heap too short for them fails the request before its answer has begun.
    from app.health import current, explained

    health = current()
    diagnosis = explained(health.codes())
    return _status(health, diagnosis)


def _status(health, diagnosis):
    import gc

    gc.collect()  # heap free as live data leaves it, with the console's modules loaded
    st = parts["status"]
    sections = st.sections
    identity = sections.get("identity") or {}
    uplink = sections.get("uplink")
    yield "identity", _pairs(("device_id", identity.get("device_id")),
                             ("firmware", identity.get("firmware")),
                             ("bundle", identity.get("bundle")),
                             ("image", identity.get("image")), ("board", st.board))
    yield "uptime_s", st.uptime_s()
    yield "reset_cause", st.reset_cause
    yield "boot_count", st.boot_count
    yield "heap", _pairs(("free", gc.mem_free()), ("used", gc.mem_alloc()))
    yield "modem", _modem(sections.get("modem"))
    yield "uplink", uplink
    yield "last_telemetry_t", uplink.get("last_t") if uplink else None
    yield "counters", counters()[1]
    yield "sensors", sensors()[1]
    yield "ota", sections.get("ota")
    log = parts.get("log")
    yield "log", _pairs(("errors", log.errors), ("warnings", log.warnings))
    yield "health", health.summary()
    yield "diagnosis", diagnosis


def _pairs(*pairs):
    yield from pairs


def _modem(modem):
    if not modem:
        return None
    return _modem_pairs(modem)


def _modem_pairs(modem):
    ident = modem.get("identity") or {}
    signal = modem.get("signal") or {}
    yield "state", modem.get("state")
    yield "iccid", ident.get("iccid")
    yield "imei", ident.get("imei")
    yield "sim", modem.get("sim")
    yield "registration", modem.get("registration")
    for key in ("operator", "act", "band", "rsrp", "rsrq", "sinr", "rssi_dbm"):
        yield key, signal.get(key)
    yield "attach_history", modem.get("history")
    for key in ("escalations", "last_error", "ceer"):
        yield key, modem.get(key)
