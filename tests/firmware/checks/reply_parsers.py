# The modem layer's reply parsers against the vendors' manual replies
# (tests/firmware/test_modem_parsing.py): each case maps its `parser` to the firmware's
# function and compares. Prints "FAIL <name> ..." for each case that fails, then
# "PASSED <n>".
import json

from app.modem import replies


def parsers(family):
    """(ACT names, CPSI layout, the family's own parsers by name) for `family`."""
    own = {}
    if family == "common":
        return replies.ACT_NAMES, None, own
    from app.modem import driver_class

    driver = driver_class(family)
    if family == "bg95":
        from app.modem.bg95 import parse_qcsq, parse_qnwinfo

        own = {"qcsq": parse_qcsq, "qnwinfo": parse_qnwinfo}
    if family == "sim7080":
        from app.modem.sim7080 import parse_cnact

        own = {"cnact": lambda reply: list(parse_cnact(reply))}
    return driver.ACT_NAMES, getattr(driver, "CPSI", None), own


def parse(case, act, cpsi, own):
    p, reply = case["parser"], case["reply"]
    if p in ("iccid", "imei", "imsi", "revision"):
        return replies.parse_id(reply, p)
    if p == "csq":
        return replies.parse_csq(reply)
    if p == "cereg":
        return replies.parse_cereg(reply[0], act)
    if p == "cgdcont":
        return [list(t) for t in replies.parse_cgdcont(reply)]
    if p == "cops":
        return replies.parse_cops(reply)
    if p in ("cpin", "ceer"):
        return replies.text(reply, "+" + p.upper() + ":")
    if p == "cpsi":
        return replies.parse_cpsi(reply, *cpsi)
    if p in own:
        return own[p](reply)
    if p == "result":
        return replies.result(reply, case["prefix"])
    raise ValueError("no parser " + p)


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) < 1e-6
    if isinstance(a, dict):
        return isinstance(b, dict) and sorted(a) == sorted(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def run(family, path):
    """Checks every case in `path` (one JSON case a line, read one at a time to spare the
    heap) with `family`'s parsers."""
    act, cpsi, own = parsers(family)
    passed = 0
    with open(path) as f:
        for line in f:
            case = json.loads(line)
            try:
                got = parse(case, act, cpsi, own)
                if "error" in case:
                    print("FAIL", case["name"], "no error, got", json.dumps(got))
                elif same(got, case["expect"]):
                    passed += 1
                else:
                    print("FAIL", case["name"], "got", json.dumps(got), "want",
                          json.dumps(case["expect"]))
            except replies.ModemError as e:
                if "error" in case and case["error"] in str(e):
                    passed += 1
                else:
                    print("FAIL", case["name"], "raised", repr(str(e)))
    print("PASSED", passed)
