# The device's health, as the fleet sees it (Memfault-style): reboot reasons with counts, the
# last crash (kept on flash across the reset it causes), connectivity figures, heap low-water
# marks, the diagnosis codes the running state shows, and the service log of changes made at
# the console. Shown by the console's status, sent upstream in the status message
# (docs/uplink.md, contract A), its figures made by their owners:
#   the modem's ConnectionManager: status "rejects" {cause: n}, "failures", "unanswered"
#   the Uplink: status "up_s" and "up_since" (seconds with a session up), "failures"
#   app.main's heartbeat: heap free and the largest free block (note_heap)
# This module keeps the totals across boots in one record (PATH), written through the store:
# at boot, with each status message, at a crash before its reset, and for a service change.
# It is loaded for each of those and let go after (a Health is made for one use and reads the
# record afresh): between them only the status's heap_low stays in RAM.
import time

from app import store
from micropython import const

PATH = "/health.json"
_CRASH_TEXT = const(80)  # "ExcType: message" upstream
_TRACE_MAX = const(400)  # the traceback kept on flash
_SERVICE_KEPT = const(3)  # service log entries kept (and sent)
_NOCOV_CAUSES = (12, 13, 15)
# Bring-ups in a row the modem did not answer before it counts as hung: one can be a modem
# still starting; the second follows a re-sync that did not help either.
_HUNG_AFTER = const(2)  # EMM causes that mean no usable cell here, not a barred SIM


class Health:
    # status: the device's Status (its sections are read, never changed; its heap_low is the
    # heartbeat's [heap free, largest free block] low-water marks of this boot); log.
    def __init__(self, status, log):
        self.status = status
        self.log = log
        try:
            self.rec = store.read_json(PATH, {})
        except store.StoreError as e:
            log.error("health", "record unreadable, starting over: %s" % e)
            self.rec = {}

    def boot(self, reset_cause):
        # -> this boot's reset cause: "crash" when the last boot ended in a recorded crash.
        # The connectivity totals so far become this boot's base ("cn0"): this boot's own
        # figures count from zero in their owners and are added to it, never twice.
        rec = self.rec
        rec["cn0"] = rec.get("cn") or {}
        if rec.pop("cp", 0):
            reset_cause = "crash"
        elif rec.get("next"):
            reset_cause = rec["next"]  # a reset asked for (console, command): said why
        rec.pop("next", None)
        rr = rec.setdefault("rr", {})
        rr[reset_cause] = rr.get(reset_cause, 0) + 1
        return reset_cause  # the caller saves (save()) once the boot is logged

    # -- records -----------------------------------------------------------------------------

    def crash(self, e):
        # The application failed as a whole and the device resets next: what failed goes to
        # flash first (a cut before the rename keeps the previous record, after it this one).
        import io
        import sys

        text = "%s: %s" % (type(e).__name__, e)
        buf = io.StringIO()
        sys.print_exception(e, buf)
        self.rec["cr"] = {"t": time.time(), "e": text[:_CRASH_TEXT],
                          "tb": buf.getvalue()[-_TRACE_MAX:]}
        self.rec["cp"] = 1
        self._save()

    def rebooting(self, why):
        # A reset asked for: the next boot counts it under `why` instead of its reset cause.
        self.rec["next"] = why
        self._save()

    def service(self, who, what):
        # A change made at the console, for the device's record and the next status message.
        log = self.rec.setdefault("sl", [])
        log.append([time.time(), who, what[:60]])
        del log[:-_SERVICE_KEPT]
        self._save()

    def iccid(self):
        # The ICCID the device is bound to: recorded at the first status message with a SIM
        # read, and by a SIM swap done at the console.
        return self.rec.get("iccid")

    def bind(self, iccid):
        # The first ICCID the device reads becomes the one it is bound to.
        if iccid and not self.rec.get("iccid"):
            self.rec["iccid"] = iccid
            self._save()

    def sim_swap(self, old, new, who):
        self.rec["iccid"] = new
        self.rec["sw"] = [time.time(), old, new, who]
        self.service(who, "SIM swap %s -> %s" % (old, new))

    def save(self):
        self._save()

    def _save(self):
        try:
            store.write_json(PATH, self.rec)
        except store.StoreError as e:
            self.log.error("health", "not recorded: %s" % e)

    # -- figures -----------------------------------------------------------------------------

    def connectivity(self):
        # {"s": seconds with a session up, "f": connection failures, "rj": {cause: n}}: the
        # totals of earlier boots and this one's.
        base = self.rec.get("cn0") or {}
        sections = self.status.sections
        modem = sections.get("modem") or {}
        uplink = sections.get("uplink") or {}
        up = uplink.get("up_s", 0)
        since = uplink.get("up_since")
        if since is not None:
            up += time.ticks_diff(time.ticks_ms(), since) // 1000
        rj = dict(base.get("rj") or {})
        rejects = modem.get("rejects") or {}
        for cause in rejects:
            key = str(cause)
            rj[key] = rj.get(key, 0) + rejects[cause]
        return {"s": base.get("s", 0) + up,
                "f": base.get("f", 0) + modem.get("failures", 0) + uplink.get("failures", 0),
                "rj": rj}

    def summary(self):
        rec = self.rec
        low = self.status.heap_low or (None, None)
        out = {"reset_cause": self.status.reset_cause, "reboots": rec.get("rr", {}),
               "last_crash": rec.get("cr"), "connectivity": self.connectivity(),
               "heap_low": {"free": low[0], "largest_block": low[1]},
               "iccid_bound": rec.get("iccid"), "service_log": rec.get("sl", [])}
        if rec.get("sw"):
            out["sim_swap"] = rec["sw"]
        return out

    def codes(self):
        # The diagnosis codes the running state shows now (app.diagnoses explains them).
        out = []
        s = self.status.sections
        modem = s.get("modem")
        if modem:
            _modem_codes(modem, out)
        uplink = s.get("uplink")
        if uplink and modem and modem.get("state") == "connected" and uplink.get("failures") \
                and uplink.get("state") != "connected":
            out.append(broker_code(uplink.get("last_error")))
        sensors = s.get("sensors")
        if sensors:
            for name in sensors:
                fault = sensors[name].get("fault")
                if fault:
                    out.append(sensor_code(name, fault))
        data = s.get("data")
        if data and data.get("dp") and "SIM_NODATA" not in out:
            out.append("SIM_NODATA")
        from app import parts

        usage = parts.get("usage")  # its uses waiting for the flash
        if usage is not None and usage.pending:
            out.append("COUNTER_STUCK")
        return out

    # -- the status message (contract A, docs/uplink.md) --------------------------------------

    def message(self, as_json=False):
        # The online status, retained on d/<id>/s: a map of short keys, CBOR (JSON when the
        # config says telemetry_json). The running totals go to flash with it.
        st = self.status
        modem = st.sections.get("modem") or {}
        ident = modem.get("identity")
        if ident and not self.rec.get("iccid"):
            self.rec["iccid"] = ident.get("iccid")  # the SIM this device is bound to (saved below)
        self.rec["cn"] = self.connectivity()
        identity = st.sections.get("identity") or {}
        msg = {"on": 1, "v": 1, "t": time.time(), "fw": identity.get("firmware"),
               "bc": st.boot_count, "rc": st.reset_cause,
               "rr": self.rec.get("rr", {}), "up": st.uptime_s(), "cn": self.rec["cn"],
               "dx": self.codes()}
        image = identity.get("image")
        if image:
            # Only once an image update confirmed: the factory image costs no air bytes.
            msg["im"] = image
        cr = self.rec.get("cr")
        if cr:
            msg["cr"] = {"t": cr["t"], "e": cr["e"]}
        if st.heap_low is not None:
            msg["hp"] = {"f": st.heap_low[0], "lb": st.heap_low[1]}
        data = st.sections.get("data")
        if data:
            for key in ("tx", "rx", "ds"):
                if key in data:
                    msg[key] = data[key]
            if data.get("dp"):
                msg["dp"] = 1
        sl = self.rec.get("sl")
        if sl:
            msg["sl"] = sl[-1]  # the newest change made at the console (who, what)
        self._save()
        if as_json:
            import json

            return json.dumps(msg, separators=(",", ":")).encode()
        from app.uplink.codec import cbor

        out = bytearray()
        cbor(out, msg)
        return out


def current():
    # The health record for one request (the console's): the module is let go after it.
    from app import parts

    return Health(parts["status"], parts["log"])


def explained(codes):
    # The codes with what is wrong, the repair and the parts (app.diagnoses): the table is
    # loaded only when there is a code to explain, so a healthy unit's answers need none of it.
    if not codes:
        return []
    from app.diagnoses import explain

    return explain(codes)


def sensor_code(name, fault):
    # A sensor driver's fault (app.sensors) as a diagnosis code.
    if fault == "range":
        return "SENSOR_RANGE:" + name
    if fault == "stuck":
        return "SENSOR_STUCK:" + name
    return "SENSOR_MISSING:" + name


def broker_code(error):
    # A session that failed while the link was up: refused credentials, or no broker.
    error = error or ""
    return "BROKER_AUTH" if "refused" in error or "auth" in error else "BROKER_DOWN"


def _modem_codes(modem, out):
    sim = modem.get("sim")
    if sim and sim != "READY":
        out.append("SIM_MISSING")
        return
    if modem.get("unanswered", 0) >= _HUNG_AFTER:
        out.append("MODEM_HUNG")
        return
    reg = modem.get("registration")
    if modem.get("state") == "connected" or not reg:
        return
    if reg.get("denied"):
        cause = reg.get("cause")
        code = "NET_NOCOV" if cause in _NOCOV_CAUSES or cause is None else "NET_REJECT"
        out.append(code if cause is None else "%s:%d" % (code, cause))
    elif reg.get("sms_only"):
        out.append("SIM_NODATA")
    elif not reg.get("registered") and modem.get("state") in ("registering", "backoff"):
        out.append("NET_NOCOV")
    elif reg.get("registered") and modem.get("state") == "backoff":
        err = modem.get("last_error") or ""
        if "attach" in err or "pdp" in err.lower() or "data" in err:
            out.append("SIM_NODATA")
