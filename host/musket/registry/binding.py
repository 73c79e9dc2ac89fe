"""Binding a unit on the factory line: which device it is, and whether its SIM and modem may be
bound to it. Runs inside the caller's transaction, so nothing is committed until the caller has
written the device and ends the transaction.

A device is its board: the ESP32's factory MAC (chip ID) and the modem soldered to it (IMEI).
The device ID is looked up by both, so running provisioning again on the same unit finds the
same device, and a modem moved to another board is noticed. The SIM (ICCID) is what may change
in a unit's life: a swap is a rebind, with a reason, audited.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from musket.registry.core import now, record_audit, set_sim_state, sim_record
from musket.registry.database import RegistryRefused
from musket.registry.records import Actor
from musket.registry.schema import bindings, credentials, devices, sims

# Device IDs: a prefix and 8 characters of Crockford's base-32 alphabet in lower case (no i, l,
# o, u: nothing to misread on a label), 40 random bits.
ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ID_LENGTH = 8
DEFAULT_ID_PREFIX = "msk"
OLD_SIM_STATES = ("retired", "inventory")


class BindingRefused(RegistryRefused):
    """The unit cannot be bound as it is; the message says why and what to do."""


@dataclass(frozen=True)
class Unit:
    """What the station read from one unit."""

    iccid: str
    imei: str
    imsi: str | None
    chip_id: str
    board: str | None


@dataclass(frozen=True)
class Credentials:
    """What the registry keeps of a device's new secret: the broker's hash and the check."""

    secret_hash: str
    secret_check: str

    def __repr__(self) -> str:  # neither belongs in a log line
        return "Credentials(...)"


@dataclass
class BindingPlan:
    device_id: str
    new_device: bool
    # Set when the unit's SIM is not the one the registry has for the device: the old ICCID.
    swap_from: str | None
    # The SIM is not in the registry at all and the caller allowed that.
    unknown_sim: bool
    # sha256 of the device's current secret (hex), None for a device without credentials.
    secret_check: str | None


def plan(conn: Connection, unit: Unit, *, rebind: bool = False,
         allow_unknown_sim: bool = False, id_prefix: str = DEFAULT_ID_PREFIX,
         id_choice: Callable[[str], str] = secrets.choice) -> BindingPlan:
    """Decides what binding `unit` means; raises BindingRefused with the reason.
    `id_choice` draws each character of a new device ID from the alphabet it is given."""
    by_imei = _device_where(conn, devices.c.imei == unit.imei)
    by_chip = _device_where(conn, devices.c.chip_id == unit.chip_id)
    if by_imei and by_chip and by_imei.device_id != by_chip.device_id:
        raise BindingRefused(f"IMEI {unit.imei} is already bound to device {by_imei.device_id}, "
                             f"but this board is device {by_chip.device_id}")
    if by_imei and not by_chip:
        raise BindingRefused(f"IMEI {unit.imei} is already bound to device {by_imei.device_id} "
                             f"(board {by_imei.chip_id}); this is board {unit.chip_id}: was the "
                             "modem moved to another board?")
    if by_chip and not by_imei:
        raise BindingRefused(f"this board is device {by_chip.device_id} with IMEI "
                             f"{by_chip.imei}, but its modem now reports IMEI {unit.imei}: a "
                             "replaced modem is a new device (retire the old one first)")
    device = by_imei
    holder = _device_where(conn, devices.c.iccid == unit.iccid)
    if holder is not None and (device is None or holder.device_id != device.device_id):
        raise BindingRefused(f"SIM {unit.iccid} is already bound to device {holder.device_id} "
                             f"(IMEI {holder.imei})")
    swap = device is not None and device.iccid != unit.iccid
    if swap and not rebind:
        raise BindingRefused(f"device {device.device_id} is bound to SIM {device.iccid}, but "
                             f"the unit holds SIM {unit.iccid}: for a SIM swap run again with "
                             "--rebind --reason \"...\"")
    sim = sim_record(conn, unit.iccid)
    if device is None or swap:
        if sim is None and not allow_unknown_sim:
            raise BindingRefused(f"SIM {unit.iccid} is not in the registry (import the "
                                 "vendor's SIM list with `musket registry import-sims`, or "
                                 "pass --allow-unknown-sim)")
        if sim is not None and sim.state != "inventory":
            raise BindingRefused(f"SIM {unit.iccid} is {sim.state}, not in inventory: only a "
                                 "SIM in inventory can be bound")
    if device is None:
        return BindingPlan(_new_device_id(conn, id_prefix, id_choice), True, None,
                           sim is None, None)
    secret_check = conn.execute(select(credentials.c.secret_check)
                                .where(credentials.c.username == device.device_id)).scalar()
    return BindingPlan(device.device_id, False, device.iccid if swap else None, sim is None,
                       secret_check)


def apply(conn: Connection, plan: BindingPlan, unit: Unit, actor: Actor, *,
          new_credentials: Credentials | None = None, reason: str | None = None,
          old_sim_state: str = "retired", changes: dict | None = None) -> str:
    """Writes what `plan` decided (plus new credentials when given) with its audit records;
    returns the action recorded: provision, rebind, device-update or unchanged."""
    stamp = now()
    changes = dict(changes or {})
    if plan.unknown_sim:
        conn.execute(insert(sims).values(iccid=unit.iccid, plan=None, state="inventory",
                                         imsi=unit.imsi, updated=stamp))
        record_audit(conn, actor, "sim-added", unit.iccid,
                     {"state": "inventory", "why": "not in the vendor's list; allowed at "
                                                   "provisioning"})
    if plan.new_device:
        action = "provision"
        conn.execute(insert(devices).values(
            device_id=plan.device_id, imei=unit.imei, iccid=unit.iccid, imsi=unit.imsi,
            board=unit.board, chip_id=unit.chip_id, created=stamp))
        changes.update({"imei": unit.imei, "iccid": unit.iccid, "chip_id": unit.chip_id,
                        "board": unit.board, "sim": ["inventory", "bound"]})
    elif plan.swap_from is not None:
        action = "rebind"
        if not reason:
            raise BindingRefused("a SIM swap needs a reason (--reason)")
        if old_sim_state not in OLD_SIM_STATES:
            raise BindingRefused(f"the old SIM can go to {' or '.join(OLD_SIM_STATES)}, not "
                                 f"{old_sim_state!r}")
        conn.execute(update(bindings).where(bindings.c.device_id == plan.device_id,
                                            bindings.c.unbound.is_(None))
                     .values(unbound=stamp, reason=reason))
        conn.execute(update(devices).where(devices.c.device_id == plan.device_id)
                     .values(iccid=unit.iccid, imsi=unit.imsi))
        old = sim_record(conn, plan.swap_from)
        if old is not None:
            set_sim_state(conn, plan.swap_from, old_sim_state)
            record_audit(conn, actor, "sim-state", plan.swap_from,
                         {"state": [old.state, old_sim_state], "reason": reason,
                          "device_id": plan.device_id})
        changes.update({"iccid": [plan.swap_from, unit.iccid], "sim": ["inventory", "bound"],
                        "reason": reason})
    else:
        action = "device-update" if (changes or new_credentials) else "unchanged"
    if plan.new_device or plan.swap_from is not None:
        set_sim_state(conn, unit.iccid, "bound", imsi=unit.imsi)
        conn.execute(insert(bindings).values(device_id=plan.device_id, iccid=unit.iccid,
                                             imei=unit.imei, bound=stamp, unbound=None,
                                             reason=reason))
    if new_credentials is not None:
        _store_credentials(conn, plan.device_id, new_credentials,
                           replace=plan.secret_check is not None)
        changes["credentials"] = "renewed" if plan.secret_check is not None else "issued"
    record_audit(conn, actor, action, plan.device_id, changes)
    return action


def _store_credentials(conn: Connection, username: str, new: Credentials,
                       replace: bool) -> None:
    values = {"secret_hash": new.secret_hash, "secret_check": new.secret_check, "issued": now()}
    if replace:
        conn.execute(update(credentials).where(credentials.c.username == username)
                     .values(**values))
    else:
        conn.execute(insert(credentials).values(username=username, **values))


def _device_where(conn: Connection, condition):
    return conn.execute(select(devices).where(condition)).first()


def _new_device_id(conn: Connection, prefix: str, choice: Callable[[str], str]) -> str:
    while True:
        body = "".join(choice(ID_ALPHABET) for _ in range(ID_LENGTH))
        device_id = f"{prefix}-{body}" if prefix else body
        if _device_where(conn, devices.c.device_id == device_id) is None:
            return device_id
