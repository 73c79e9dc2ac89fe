"""What a person sees of a unit's answers: the status screen, diagnoses with their repair and
parts, and any other answer as readable lines. Rendered with rich; the full-screen session and
the one-shot commands share it.

The device decides what its answers hold (it owns the facts); this module only knows where to
look for the things a technician needs first (diagnosis codes, registration and its reject
cause, signal) and shows every other section as it comes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

# Top-level values of a status answer shown in the identity block.
_IDENTITY_KEYS = ("device_id", "board", "fw", "firmware", "boot_count", "reset_cause",
                  "uptime_s", "time")
# Keys that hold diagnosis codes wherever they appear: a list of codes, or of the device's
# own entries ({"code", "problem", "repair", "parts"}).
_CODE_KEYS = ("dx", "diagnoses", "diagnosis", "codes")
_MAX_VALUE_CHARS = 70


@dataclass(frozen=True)
class Diagnosis:
    code: str  # as the device reported it, with its detail: "NET_NOCOV:15", "SENSOR_MISSING:sht"
    problem: str
    repair: str
    parts: str


def diagnosis(code: str, device_entry: dict | None = None) -> Diagnosis:
    """The table's row for `code` (musket.diagnoses: the firmware's own table, read as data),
    else the entry the device sent with it; a code neither knows is shown, never dropped."""
    row = _find(code)
    if row is not None:
        return Diagnosis(code, row.problem, row.repair, row.parts)
    if device_entry:
        return Diagnosis(code, str(device_entry.get("problem") or ""),
                         str(device_entry.get("repair") or ""),
                         str(device_entry.get("parts") or ""))
    return Diagnosis(code, "unknown code (not in this musket's diagnosis table)",
                     "update musket (its table comes with the firmware)", "")


def _find(code: str):
    try:
        from musket import diagnoses
    except ImportError:  # a musket without the table still shows the codes themselves
        return None
    return diagnoses.find(code, _rows(diagnoses))


_ROWS: list | None = None


def _rows(diagnoses) -> list:
    global _ROWS
    if _ROWS is None:
        _ROWS = diagnoses.load()
    return _ROWS


def codes_in(answer) -> list[str]:
    """Every diagnosis code in an answer (status or selftest), in order, once each."""
    return list(_device_entries(answer))


def _device_entries(answer) -> dict[str, dict | None]:
    """code -> the device's own entry for it (None when it sent the bare code), in order."""
    found: dict[str, dict | None] = {}

    def walk(value, key=None):
        if key in _CODE_KEYS and isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    found.setdefault(item, None)
                elif isinstance(item, dict) and isinstance(item.get("code"), str):
                    found[item["code"]] = item
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)

    walk(answer)
    return found


def diagnoses_table(codes: list[str], answer=None) -> RenderableType:
    """Each code on its own line with what is wrong, then the repair and the parts under it:
    readable on a laptop's narrow terminal, where a four-column table is not."""
    if not codes:
        return Text("diagnosis: no fault found", style="green")
    entries = _device_entries(answer) if answer is not None else {}
    out = Text("diagnosis\n", style="bold underline")
    for d in (diagnosis(code, entries.get(code)) for code in codes):
        out.append(d.code, style="bold red")
        out.append(f"  {d.problem}\n", style="bold")
        out.append(f"    repair: {d.repair}\n")
        if d.parts:
            out.append(f"    parts:  {d.parts}\n")
    out.rstrip()
    return out


def status_screen(status: dict, port: str = "") -> RenderableType:
    """The status view: one line per part a technician checks, in the order they check it,
    then the diagnosis. Every fact is the device's; `status --json` has all of them."""
    status = status if isinstance(status, dict) else {"answer": status}
    rows = [(name, text) for name, text in _status_rows(status) if text]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", min_width=12)
    grid.add_column(overflow="fold")
    for name, text in rows:
        grid.add_row(name, text)
    title = Text("unit" + (f" on {port}" if port else ""), style="bold underline")
    return Group(title, grid, diagnoses_table(codes_in(status), status))


def _status_rows(st: dict):
    ident = {**_dict(st.get("identity")), **{k: st[k] for k in _IDENTITY_KEYS if k in st}}
    yield "identity", _pairs(
        ("device", ident.get("device_id") or "not provisioned"), ("board", ident.get("board")),
        ("firmware", ident.get("firmware") or ident.get("fw")), ("bundle", ident.get("bundle")),
        ("image", _image(ident)),
        ("up", _seconds(ident.get("uptime_s"))), ("boot", ident.get("boot_count")),
        ("reset", ident.get("reset_cause")))
    modem = _dict(st.get("modem"))
    reg = _dict(modem.get("registration"))
    yield "modem", _pairs(("state", modem.get("state")), ("SIM", modem.get("sim")),
                          ("ICCID", modem.get("iccid")), ("IMEI", modem.get("imei")),
                          ("last error", modem.get("last_error")))
    yield "registration", _pairs(
        ("", reg.get("state")), ("reject cause", reg.get("cause")), ("act", reg.get("act")),
        ("operator", modem.get("operator")), ("band", modem.get("band")),
        ("CEER", modem.get("ceer")))
    yield "signal", _pairs(("RSRP", modem.get("rsrp")), ("RSRQ", modem.get("rsrq")),
                           ("SINR", modem.get("sinr")), ("RSSI dBm", modem.get("rssi_dbm")))
    uplink = _dict(st.get("uplink"))
    yield "broker link", _pairs(
        ("", uplink.get("state") or ("not configured" if "uplink" in st else None)),
        ("sessions", uplink.get("connects")), ("sent", uplink.get("sent")),
        ("queued", uplink.get("queued")), ("error", uplink.get("last_error")),
        ("last telemetry", st.get("last_telemetry_t")))
    counters = _dict(st.get("counters"))
    yield "counters", _pairs(*_dict(counters.get("values")).items(),
                             ("awaiting delivery", counters.get("pending")))
    sensors = _dict(st.get("sensors"))
    readings = _dict(sensors.get("readings"))
    yield "sensors", "  ".join(
        f"{name} " + _one_line({k: v for k, v in _dict(r).items() if k != "errors"})
        for name, r in readings.items())
    faults = _dict(sensors.get("faults"))
    yield "faults", (", ".join(f"{k}: {v}" for k, v in faults.items()) if faults
                     else ("none" if sensors else None))
    yield "update", _update(_dict(st.get("ota")))
    health = _dict(st.get("health"))
    yield "health", _pairs(("reboots", health.get("reboots")),
                           ("last crash", health.get("last_crash")),
                           ("connectivity", health.get("connectivity")))
    log = health.get("service_log") or []
    yield "service log", _service_entry(log[-1]) if log else None


def _update(ota: dict) -> str:
    """Where an update stands (app/ota/download.py's status): its state, campaign and
    version, and while it downloads the bytes the unit holds of the bundle's."""
    held = None
    if isinstance(ota.get("at"), int) and isinstance(ota.get("size"), int) and ota["size"] > 0:
        held = f"{ota['at']:,} of {ota['size']:,} bytes ({100 * ota['at'] // ota['size']}%)"
    return _pairs(("", ota.get("state")), ("campaign", ota.get("campaign")),
                  ("version", ota.get("version")), ("held", held))


def _service_entry(entry) -> str:
    """The newest change made at the console: [time, technician, what]."""
    if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], int):
        when = datetime.fromtimestamp(entry[0], UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return f"{when}  {entry[1]}: {entry[2]}"
    return _one_line(entry)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _pairs(*pairs) -> str:
    return "  ".join(f"{k} {_one_line(v)}" if k else _one_line(v)
                     for k, v in pairs if v not in (None, "", {}, []))


def _image(ident: dict) -> str | None:
    # The firmware image's version; null from a unit that says it still runs the image
    # flashed on the line; nothing at all from a firmware that does not report it.
    if "image" not in ident:
        return None
    return ident["image"] or "factory"


def _seconds(value) -> str | None:
    if not isinstance(value, int):
        return None
    h, rest = divmod(value, 3600)
    return (f"{h}h" if h else "") + f"{rest // 60:02d}m{rest % 60:02d}s"


def answer_view(command: str, answer) -> RenderableType:
    """Any other answer, readable: a mapping as key/value lines, a list a line each."""
    blocks: list[RenderableType] = []
    if isinstance(answer, dict):
        blocks.append(_section(command, {k: v for k, v in answer.items()
                                         if k not in _CODE_KEYS}))
        if any(k in answer for k in _CODE_KEYS) or "passed" in answer:
            blocks.append(diagnoses_table(codes_in(answer), answer))
    elif isinstance(answer, list):
        blocks.append(Text("\n".join(_one_line(v) for v in answer) or "(empty)"))
    else:
        blocks.append(Text(_one_line(answer)))
    return Group(*blocks)


def _section(title: str, values: dict) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", min_width=18)
    table.add_column(overflow="fold")
    for key, value in values.items():
        table.add_row(str(key), _one_line(value))
    return Group(Text(title, style="bold underline"), table)


def _one_line(value) -> str:
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_one_line(v)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(_one_line(v) for v in value)
    elif value is None:
        text = "-"
    else:
        text = str(value)
    return text if len(text) <= _MAX_VALUE_CHARS * 3 else text[:_MAX_VALUE_CHARS * 3] + "…"


def to_ansi(renderable: RenderableType, width: int) -> str:
    """The renderable as terminal text (colours as ANSI codes) at the given width."""
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="standard", width=max(width, 40),
            soft_wrap=False, highlight=False).print(renderable)
    return out.getvalue()
