# The device's side of provisioning (musket provision), called over the console's raw REPL,
# each function printing one JSON line:
#
#   from app import factory; factory.state("<nonce hex>")
#   from app import factory; factory.stage({...config...}, {...secrets...}, b"...ca...")
#   from app import factory; factory.commit()
#
# stage() writes every file under a temporary name (store records for the JSON files, so each
# is whole or absent); commit() renames them into place, the config last: a unit whose config
# names a device ID has its credentials. Secrets are never printed: state() proves the stored
# password with a digest salted by the station's one-time nonce.
import binascii
import hashlib
import json
import os

from app import config, store

CONFIG = "/config.json"
SECRETS = "/secrets.json"
CA = "/ca.pem"
STAGED = ".new"
# Renamed in this order: the config, which says the unit is provisioned, comes last.
_ORDER = (CA, SECRETS, CONFIG)
_MQTT_KEYS = ("device_id", "mqtt_host", "mqtt_port", "mqtt_tls")


def _hex(data):
    return binascii.hexlify(data).decode()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _file_digest(path):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(256)
                if not chunk:
                    break
                h.update(chunk)
    except OSError:
        return None
    return _hex(h.digest())


def state(nonce_hex):
    # What the unit holds now: chip ID, board, the provisioning keys of its config, whether its
    # stored password matches (as sha256(nonce + sha256(password))), the CA's digest.
    import machine

    from app import board as board_mod

    report = {"chip_id": _hex(machine.unique_id())}
    try:
        report["board"] = board_mod.load().get("name")
    except board_mod.BoardError:
        report["board"] = None
    effective, problems = config.load(CONFIG)
    report["config"] = dict((k, effective.get(k)) for k in _MQTT_KEYS)
    report["config_problems"] = len(problems)
    try:
        secrets = store.read_json(SECRETS, {}) or {}
    except store.StoreError:
        secrets = {}
    password = secrets.get("mqtt_password")
    report["mqtt_user"] = secrets.get("mqtt_user")
    report["proof"] = None
    if isinstance(password, str):
        inner = hashlib.sha256(password.encode()).digest()
        report["proof"] = _hex(hashlib.sha256(binascii.unhexlify(nonce_hex) + inner).digest())
    report["ca"] = _file_digest(CA)
    print(json.dumps(report))


def discard():
    for path in _ORDER:
        for leftover in (path + STAGED, path + STAGED + ".tmp"):
            if _exists(leftover):
                os.remove(leftover)


def stage(changes, secrets, ca):
    # Writes the new files under temporary names; the config keeps its other keys.
    try:
        discard()
        try:
            current = store.read_json(CONFIG, {}) or {}
        except store.StoreError:
            current = {}  # damaged: config.load() already falls back to the defaults
        if not isinstance(current, dict):
            current = {}
        current.update(changes)
        config.save(CONFIG + STAGED, current)
        if secrets is not None:
            store.write_json(SECRETS + STAGED, secrets)
        if ca is not None:
            with open(CA + STAGED, "wb") as f:
                f.write(ca)
                f.flush()
        print(json.dumps({"ok": True}))
    except Exception as e:  # noqa: BLE001 - the station reads the reason from the JSON line
        discard()
        print(json.dumps({"ok": False, "error": "%s: %s" % (type(e).__name__, e)}))


def commit():
    # Moves the staged files into place, the config last.
    done = []
    try:
        for path in _ORDER:
            if _exists(path + STAGED):
                os.rename(path + STAGED, path)
                done.append(path)
        print(json.dumps({"ok": True, "written": done}))
    except OSError as e:
        print(json.dumps({"ok": False, "written": done, "error": "OSError: %s" % e}))
