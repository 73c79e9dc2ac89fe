"""Device tags: free labels on the registry's devices ("cafe-berlin", "pilot", "batch-2026-11")
that pick a cohort: an update campaign's (`musket ota publish --tag`), a bulk SIM change's
(`musket fleet sims pause --tag`). Each tag added or removed is audited."""

from __future__ import annotations

import re

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, Engine

from musket.errors import BadInput
from musket.registry.core import now, record_audit
from musket.registry.records import Actor
from musket.registry.schema import device_tags, devices

TAG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


class TagError(BadInput):
    """A tag that is not one, or a device the registry does not have."""


def check_tag(text: str) -> str:
    tag = text.strip().lower()
    if not TAG.match(tag):
        raise TagError(f"tag {text!r}: 1-32 of a-z, 0-9, '.', '_', '-', starting with a letter "
                       "or digit")
    return tag


def _known(conn: Connection, device_ids: list[str]) -> None:
    have = {d for (d,) in conn.execute(select(devices.c.device_id)
                                       .where(devices.c.device_id.in_(device_ids)))}
    missing = [d for d in device_ids if d not in have]
    if missing:
        raise TagError(f"not in the registry: {', '.join(missing[:10])}"
                       + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))


def add(engine: Engine, tag: str, device_ids: list[str], actor: Actor) -> list[str]:
    """Tags the devices (all or none: an unknown device changes nothing); returns those that
    did not have the tag yet."""
    tag = check_tag(tag)
    wanted = list(dict.fromkeys(device_ids))
    with engine.begin() as conn:
        _known(conn, wanted)
        had = {d for (d,) in conn.execute(select(device_tags.c.device_id)
                                          .where(device_tags.c.tag == tag))}
        added = [d for d in wanted if d not in had]
        if added:
            at = now()
            conn.execute(insert(device_tags), [{"device_id": d, "tag": tag, "added": at}
                                               for d in added])
            for d in added:
                record_audit(conn, actor, "tag", d, {"added": tag})
    return added


def remove(engine: Engine, tag: str, device_ids: list[str], actor: Actor) -> list[str]:
    """Removes the tag from the devices that have it; returns them."""
    tag = check_tag(tag)
    wanted = list(dict.fromkeys(device_ids))
    with engine.begin() as conn:
        had = {d for (d,) in conn.execute(select(device_tags.c.device_id)
                                          .where(device_tags.c.tag == tag,
                                                 device_tags.c.device_id.in_(wanted)))}
        removed = [d for d in wanted if d in had]
        if removed:
            conn.execute(delete(device_tags).where(device_tags.c.tag == tag,
                                                   device_tags.c.device_id.in_(removed)))
            for d in removed:
                record_audit(conn, actor, "untag", d, {"removed": tag})
    return removed


def tagged(engine: Engine, tags: list[str]) -> list[str]:
    """The devices carrying any of the tags, by device ID."""
    chosen = [check_tag(t) for t in tags]
    with engine.connect() as conn:
        rows = conn.execute(select(device_tags.c.device_id).distinct()
                            .where(device_tags.c.tag.in_(chosen))
                            .order_by(device_tags.c.device_id)).all()
    return [r[0] for r in rows]


def listing(engine: Engine) -> dict[str, list[str]]:
    """Every tag with its devices."""
    out: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for tag, device_id in conn.execute(select(device_tags.c.tag, device_tags.c.device_id)
                                           .order_by(device_tags.c.tag,
                                                     device_tags.c.device_id)):
            out.setdefault(tag, []).append(device_id)
    return out
