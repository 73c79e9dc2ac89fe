# The console's reads that both its dispatch (app.console_cmds) and its status
# (app.console_status) answer with: the counters with their thresholds, the sensors with their
# faults. A module of their own, so that neither of the two imports the other.
from app import parts


def counters():
    c = parts.get("counters")
    if c is None:
        return "result", None
    out = dict(c.status())
    # Thresholds as app.counter keeps them (in the counter's units of record).
    out["rules"] = [{"counter": r[0], "every": r[1], "at": r[2], "action": r[3]}
                    for r in c.rules]
    out["marks"] = c.marks
    return "result", out


def sensors():
    s = parts.get("sensors")
    if s is None:
        return "result", None
    s.update_section()
    return "result", {"readings": s.section, "faults": s.faults()}
