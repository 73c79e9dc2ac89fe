"""A SIM swap found in the field, recorded in the registry, or queued until it can be.

The console reads the unit's ICCID; when it is not the one the unit had, the swap is a rebind
of the device to its new SIM, made by the registry's own binding code (registry.binding: the
same checks and audit rows as `musket provision --rebind`). A field laptop often has no
registry at hand: then the swap waits in a queue file, one JSON line per swap, and `musket
console sync` (or the next console session) applies it. A swap the registry refuses (the new
SIM bound elsewhere, the device unknown) stays in the queue with its reason: nothing is lost.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from musket.errors import BadInput, MusketError, SchemaMismatch, Unreachable

QUEUE_NAME = "console-rebinds.jsonl"
DEFAULT_REASON = "SIM swapped in the field"


@dataclass
class Swap:
    """One SIM swap seen on a unit: which device, old and new ICCID, who, why, when."""

    device_id: str
    old_iccid: str | None
    new_iccid: str
    technician: str
    reason: str
    station: str
    seen: str  # ISO time the console saw it

    @classmethod
    def seen_now(cls, device_id, old_iccid, new_iccid, technician, reason, station) -> Swap:
        return cls(device_id, old_iccid, new_iccid, technician, reason or DEFAULT_REASON,
                   station, datetime.now(UTC).isoformat(timespec="seconds"))


@dataclass
class Outcome:
    """What became of a swap: recorded in the registry, or queued, and why."""

    swap: Swap
    state: str  # "recorded", "unchanged", "queued" or "refused"
    detail: str

    def as_dict(self) -> dict:
        return {**asdict(self.swap), "state": self.state, "detail": self.detail}


def default_queue() -> Path:
    """Under the user's data folder ($XDG_DATA_HOME/musket, else ~/.local/share/musket)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "musket" / QUEUE_NAME


def record(registry, swap: Swap) -> Outcome:
    """Rebinds the device to its new SIM in one registry transaction, audited with the
    technician's name and the reason. Raises the registry's refusal (BindingRefused: exit 6)."""
    from musket.registry import Actor, RegistryRefused, binding
    from musket.registry.binding import Unit

    device = registry.device(swap.device_id)
    if device is None:
        raise RegistryRefused(f"device {swap.device_id} is not in the registry {registry.url}")
    if device.iccid == swap.new_iccid:
        return Outcome(swap, "unchanged", f"{swap.device_id} is already bound to SIM "
                                          f"{swap.new_iccid}")
    actor = Actor(swap.station[:64], swap.technician[:64])
    unit = Unit(iccid=swap.new_iccid, imei=device.imei, imsi=None, chip_id=device.chip_id,
                board=device.board)
    with registry.transaction() as conn:
        plan = binding.plan(conn, unit, rebind=True)
        binding.apply(conn, plan, unit, actor, reason=swap.reason,
                      changes={"seen_by_console": swap.seen, "technician": swap.technician,
                               "device_reported_old": swap.old_iccid})
    return Outcome(swap, "recorded", f"{swap.device_id}: SIM {plan.swap_from} → "
                                     f"{swap.new_iccid} recorded in {registry.url}")


def record_or_queue(location, swap: Swap, queue: Path) -> Outcome:
    """Records the swap when the registry can be reached, else appends it to the queue."""
    from musket.registry import Registry

    try:
        with Registry.open(location) as registry:
            return record(registry, swap)
    except (Unreachable, SchemaMismatch) as e:
        append(queue, swap)
        return Outcome(swap, "queued", f"registry not reachable ({e}); queued in {queue}: "
                                       "run `musket console sync` when it is")
    except MusketError as e:
        # Refused (the new SIM bound elsewhere, ...): the registry is unchanged, and the swap
        # the unit made is kept so that it can be applied once the registry allows it.
        append(queue, swap)
        e.hint = (f"the registry is unchanged; the swap is kept in {queue} and `musket console "
                  "sync` applies it once the registry allows it")
        raise


def append(queue: Path, swap: Swap) -> None:
    queue.parent.mkdir(parents=True, exist_ok=True)
    with open(queue, "a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(swap)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pending(queue: Path) -> list[Swap]:
    if not queue.exists():
        return []
    swaps = []
    for n, line in enumerate(queue.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            swaps.append(Swap(**json.loads(line)))
        except (ValueError, TypeError) as e:
            raise BadInput(f"{queue} line {n}: not a queued SIM swap ({e})",
                           hint="fix or remove that line; the other swaps are kept") from None
    return swaps


def sync(location, queue: Path) -> list[Outcome]:
    """Applies the queued swaps in order. Those recorded (or already in the registry) leave
    the queue; a refused one stays, with its reason in the outcome. Raises Unreachable when the
    registry still cannot be reached, with the queue untouched."""
    from musket.registry import Registry

    swaps = pending(queue)
    if not swaps:
        return []
    outcomes, kept = [], []
    with Registry.open(location) as registry:
        for swap in swaps:
            try:
                outcomes.append(record(registry, swap))
            except Unreachable:
                raise
            except MusketError as e:
                outcomes.append(Outcome(swap, "refused", str(e)))
                kept.append(swap)
    _rewrite(queue, kept)
    return outcomes


def _rewrite(queue: Path, swaps: list[Swap]) -> None:
    # Temp + rename: a crash leaves the old queue or the new one, never half of one.
    fd, tmp = tempfile.mkstemp(dir=queue.parent, prefix=".rebinds-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for swap in swaps:
            f.write(json.dumps(asdict(swap)) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, queue)
