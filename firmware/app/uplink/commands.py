# Downlink commands: JSON on the device's command topic, d/<device_id>/c:
#   {"id": "<1-32 of A-Z a-z 0-9 _ ->", "op": "<op>", ...}
#   op "config"   "set": {key: value, ...}   checked against app.config's schema, stored, and
#                 handed to the running part that owns each key (the schema names it), or
#                 reported as applying after a reboot
#   op "counter"  "name", "value" (int >= 0), "reason" (1-64 chars): Counters.adjust, audited
#   op "reboot"   restarts the device once the reply is delivered
#   op "status"   replies with the device's vitals, counters and queue figures
#   op "ota"      "offer": {"campaign", "version", "size"}: the device downloads the bundle
#                 (app.ota.download) and replies with the download's state
# Each is validated (size, schema, ranges, the topic it came on), runs at most once per id
# (ids are recorded on flash before the command runs) and is answered on d/<device_id>/r with
# {"id", "ok", "error" or "result"}. The parts a command acts on are the running ones
# (app.parts): the counters, the status, the owners of config keys.
#
# The record (PATH) remembers the last ids as [id, ok, reply, waiting]: the reply of the
# newest few, and waiting=1 until the broker has acknowledged it (the uplink sends it again
# after a reconnect or a reboot until then). A repeated id does not run again: its stored
# reply goes again, marked "dup" (a notice; the first reply is the one kept until delivered).
# The reply rides in the write that records the result, so keeping it costs no extra flash
# write; its acknowledgement costs one.
#
# Batches of commands (a message of commands, a line each) are app.uplink.batch's; they use
# the record and the steps here.
import json

from app import parts, store
from micropython import const

PATH = "/uplink.cmd"
_REMEMBERED = const(16)  # command ids kept against repeats
_REPLIES_KEPT = const(4)  # the newest ids keep their reply, to answer a repeat or resend it
_ID_MAX = const(32)
_REASON_MAX = const(64)
_VALUE_MAX = const(0x7FFFFFFF)
# Keys only provisioning may change: a wrong broker or identity would cut the device off.
LOCAL_ONLY = ("device_id", "mqtt_host", "mqtt_port", "mqtt_tls")
OPS = ("config", "counter", "reboot", "status", "ota")


def id_ok(cid):
    if not isinstance(cid, str) or not 0 < len(cid) <= _ID_MAX:
        return False
    for ch in cid:
        if not (ch.isalpha() or ch.isdigit() or ch in "_-"):
            return False
    return True


class Commands:
    def __init__(self, command_topic, log, path=PATH):
        self.topic = command_topic
        self.log = log
        self.path = path
        self.reboot = False  # set by a reboot command; the uplink resets after the reply
        self.stored = False  # the reply is on flash, waiting: the uplink marks it delivered
        self._started = None  # (id, op, command) between start() and run()
        try:
            self.seen = store.read_json(path, [])
        except store.StoreError as e:
            log.error("uplink", "command ids: %s" % e)
            self.seen = []

    def start(self, topic, payload, size):
        # A command's first step: -> its reply (a dict) when it is answered without running
        # (refused, or a repeated id); None once its id is recorded on flash, and run() and
        # finish() follow. payload is None when it was too large to keep.
        if topic != self.topic:
            return self._no(None, "not authorised: commands come on %s" % self.topic)
        if payload is None:
            return self._no(None, "too large: %d bytes" % size)
        cid, op, cmd, why = self._read(payload, OPS)
        if why:
            return self._no(cid, why)
        for entry in self.seen:
            if entry[0] == cid:
                return self._again(entry)
        why = self._check(op, cmd)
        if why:
            return self._no(cid, why)
        # Recorded before it runs: a cut during the run means it never runs again.
        self._remember([cid, None, None, 0])
        self._started = (cid, op, cmd)
        return None

    def _read(self, payload, ops):
        # -> (id, op, command, why it cannot run or None), from a command's JSON bytes.
        try:
            cmd = json.loads(bytes(payload))
        except (ValueError, UnicodeError):
            return None, None, None, "malformed: not JSON"
        if not isinstance(cmd, dict):
            return None, None, None, "malformed: expected an object"
        cid = cmd.get("id")
        if not id_ok(cid):
            return None, None, None, ("malformed: id must be 1-%d letters, digits, _ or -"
                                      % _ID_MAX)
        op = cmd.get("op")
        if op not in ops:
            if op in OPS:  # ops holds fewer (a batch's)
                return cid, op, None, "op %s cannot be batched: send it alone" % op
            return cid, op, None, "unknown op %r (one of: %s)" % (op, ", ".join(OPS))
        return cid, op, cmd, None

    def _check(self, op, cmd):
        check = getattr(self, "_check_" + op, None)
        return check(cmd) if check else None

    def run(self):
        # The started command's reply. A MemoryError is not its result: it goes to the
        # caller, which calls run() again once the heap can serve it (the uplink, after a
        # pause). Running one again is safe: each op sets values (a config, a counter's
        # value, the reboot flag, an offer) rather than adding to them.
        cid, op, cmd = self._started
        try:
            reply = getattr(self, "_do_" + op)(cmd)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any other failure is the command's result
            reply = self._no(cid, "failed: %s" % e)
        reply["id"] = cid
        return reply

    def finish(self, reply):
        # Records the started command's result with its reply, to be sent; -> the reply.
        self._remember([reply["id"], reply["ok"], reply, 1])
        self.stored = True
        return reply

    def _again(self, entry):
        # A repeated id: the stored reply again, or, when it is no longer kept, what is known
        # of the first run.
        cid, ok, reply = entry[0], entry[1], entry[2] if len(entry) > 3 else None
        if reply is None:
            reply = {"id": cid, "ok": ok}
            if ok is None:
                reply["error"] = "interrupted before it finished; not run again"
        reply = dict(reply)
        reply["dup"] = True
        return reply

    def _no(self, cid, why):
        return {"id": cid, "ok": False, "error": why}

    def _remember(self, entry):
        seen = [e for e in self.seen if e[0] != entry[0]]
        seen.append(entry)
        seen = seen[-_REMEMBERED:]
        for old in seen[:-_REPLIES_KEPT]:
            if len(old) > 3 and old[2] is not None:
                if old[3]:
                    self.log.warning("uplink", "reply to command %s no longer kept on "
                                         "flash: %d newer replies" % (old[0], _REPLIES_KEPT))
                old[2] = None
                old[3] = 0
        # Kept only once written: a write the heap could not serve leaves the record as it
        # was, and the same step can be tried again.
        store.write_json(self.path, seen)
        self.seen = seen

    # -- config -------------------------------------------------------------------------

    def _check_config(self, cmd):
        changes = cmd.get("set")
        if not isinstance(changes, dict) or not changes:
            return "config: \"set\" must be an object of keys to values"
        return check_config(changes)

    def _do_config(self, cmd):
        return {"ok": True, "result": apply_config(cmd["set"])}

    # -- counter ------------------------------------------------------------------------

    def _check_counter(self, cmd):
        return check_counter(parts.get("counters"), cmd.get("name"), cmd.get("value"),
                             cmd.get("reason"))

    def _do_counter(self, cmd):
        seq = parts["counters"].adjust(cmd["name"], cmd["value"], cmd["reason"],
                                       "cmd:" + cmd["id"])
        return {"ok": True, "result": {"seq": seq}}

    # -- the rest -----------------------------------------------------------------------

    def _do_reboot(self, cmd):
        self.reboot = True
        return {"ok": True, "result": "rebooting"}

    def _do_status(self, cmd):
        snap = parts["status"].snapshot(parts.get("log"))
        out = {}
        for key in ("boot_count", "uptime_s", "heap_free", "log_errors", "reset_cause"):
            out[key] = snap.get(key)
        modem = snap.get("modem") or {}
        out["modem"] = modem.get("state")
        out["uplink"] = snap.get("uplink")
        counters = parts.get("counters")
        if counters is not None:
            out["counters"] = counters.snapshot()
        return {"ok": True, "result": out}

    def _check_ota(self, cmd):
        if not isinstance(cmd.get("offer"), dict):
            return "offer: expected an object"
        return None

    def _do_ota(self, cmd):
        download = parts.get("download")
        if download is None:
            return {"ok": False, "error": "ota: this device has no uplink to download with"}
        why = download.take_offer(cmd["offer"])
        if why:
            return {"ok": False, "error": "ota: " + why}
        return {"ok": True, "result": dict(download.status)}


# -- the checks and the one path of a change, for commands and the console (app.console) -----


def check_config(changes):
    # -> why the changes cannot be made, or None.
    from app import config as config_mod

    for key in changes:
        if key in LOCAL_ONLY:
            return "config: %s is not settable remotely" % key
    problems = config_mod.validate(changes)[1]
    return "; ".join(problems) if problems else None


def apply_config(changes):
    # The config on flash is the one copy of every setting: the change is stored, then each
    # key goes to the running part that owns it. A key no running part takes (read only at
    # boot, or its part is not running) is reported as applying after a reboot. A cut before
    # the store's rename leaves the old config, after it the new one (app.store).
    from app import config as config_mod

    stored = config_mod.stored()[0]
    stored.update(changes)
    config_mod.save(config_mod.DEFAULT_PATH, stored)
    applied = {}
    later = {}
    for key in changes:
        part = parts.get(config_mod.owner(key))
        if part is None:
            later[key] = changes[key]
        else:
            part.configure(key, changes[key])
            applied[key] = changes[key]
    result = {}
    if applied:
        result["applied"] = applied
    if later:
        result["after_reboot"] = later
    return result


def check_counter(counters, name, value, reason):
    # -> why the adjustment cannot be made, or None.
    if counters is None:
        return "counter: this device has no counters"
    if not id_ok(name):
        return "counter: name must be 1-%d letters, digits, _ or -" % _ID_MAX
    if type(value) is not int or not 0 <= value <= _VALUE_MAX:
        return "counter: value must be an integer from 0 to %d" % _VALUE_MAX
    if not isinstance(reason, str) or not 0 < len(reason) <= _REASON_MAX:
        return "counter: reason must be 1-%d characters" % _REASON_MAX
    return None


# -- the uplink's side: replies waiting for the broker's acknowledgement -------------------


def waiting(skip, limit, path=PATH):
    # -> [(id, reply), ...], oldest first: stored replies not yet acknowledged, except ids in
    # skip (the ones the uplink already holds), at most limit.
    out = []
    for entry in store.read_json(path, []):
        if len(entry) > 3 and entry[3] and entry[2] is not None and entry[0] not in skip:
            out.append((entry[0], entry[2]))
            if len(out) >= limit:
                break
    return out


def delivered(cid, path=PATH):
    # The broker acknowledged the reply to cid: it is not sent again.
    seen = store.read_json(path, [])
    for entry in seen:
        if entry[0] == cid and len(entry) > 3 and entry[3]:
            entry[3] = 0
            store.write_json(path, seen)
            return
