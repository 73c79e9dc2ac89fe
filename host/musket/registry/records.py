"""What the registry returns: plain records with as_dict() for --json. None carries a secret."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything the registry stores is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    value = utc(value)
    return None if value is None else value.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Actor:
    """Who does something: the station (a line position, a laptop) and the person at it."""

    station: str
    operator: str


@dataclass
class SimRecord:
    iccid: str
    plan: str | None
    state: str
    imsi: str | None
    updated: datetime
    device_id: str | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "updated": iso(self.updated)}


@dataclass
class BindingRecord:
    device_id: str
    iccid: str
    imei: str
    bound: datetime
    unbound: datetime | None
    reason: str | None

    def as_dict(self) -> dict:
        return {**asdict(self), "bound": iso(self.bound), "unbound": iso(self.unbound)}


@dataclass
class DeviceRecord:
    device_id: str
    imei: str
    iccid: str | None
    imsi: str | None
    board: str | None
    chip_id: str
    created: datetime
    sim_state: str | None = None
    # When the device's current MQTT credentials were issued; the secret's hash stays inside.
    credentials_issued: datetime | None = None
    bindings: list[BindingRecord] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["created"] = iso(self.created)
        d["credentials_issued"] = iso(self.credentials_issued)
        d["bindings"] = [b.as_dict() for b in self.bindings]
        return d


@dataclass
class AuditEntry:
    id: int
    at: datetime
    station: str
    operator: str
    action: str
    subject: str
    changes: dict

    def as_dict(self) -> dict:
        return {**asdict(self), "at": iso(self.at)}

    @property
    def summary(self) -> str:
        """The changes in one line: "state inventory → bound, plan iot-1"."""
        return _summary(self.changes)


def _summary(changes: dict) -> str:
    parts = []
    for key, value in changes.items():
        if isinstance(value, list) and len(value) == 2:
            before = "none" if value[0] in (None, "") else value[0]
            parts.append(f"{key} {before} → {value[1]}")
        elif isinstance(value, dict):
            parts.append(f"{key} ({_summary(value)})")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)
