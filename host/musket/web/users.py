"""The operators of the team pages: who may log in, with which role, and what each role may
change. A password is stored only as its scrypt hash (hashlib.scrypt, a standard memory-hard
KDF, with a random salt per user); it is never logged, echoed or returned.

What a role may change (every role may look at every team's page):

=============  ==========  ===========  =======  ================  =====
change         operations  engineering  finance  customer_success  admin
=============  ==========  ===========  =======  ================  =====
SIM lifecycle  yes         no           no       no                yes
order state    yes         no           no       yes               yes
SIM plan       yes         no           yes      no                yes
=============  ==========  ===========  =======  ================  =====

SIM lifecycle is pause, resume and deactivate (musket.fleet.sims.change_states); the order
state is placed → shipped → installed (musket.services.views.set_order_state); a SIM's plan is
one of the stored plans (musket.fleet.sims.change_plans; the plans themselves are data,
`musket fleet plans import`). docs/web.md has the same table; PERMISSIONS is its code.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from musket.errors import BadInput
from musket.registry.core import record_audit
from musket.registry.records import Actor
from musket.registry.web_schema import web_users

# A change a page may make -> the roles allowed to make it.
PERMISSIONS: dict[str, frozenset[str]] = {
    "sims.lifecycle": frozenset({"operations", "admin"}),
    "orders.state": frozenset({"operations", "customer_success", "admin"}),
    "sims.plan": frozenset({"operations", "finance", "admin"}),
}
ROLES = ("engineering", "operations", "finance", "customer_success", "admin")
# Each role's own page, where a login lands.
HOME = {"engineering": "/engineering", "operations": "/operations", "finance": "/finance",
        "customer_success": "/customers", "admin": "/engineering"}

# scrypt's cost: 2**14 x 8 x 1 is 16 MB and ~50 ms a check, the parameters Python's docs and
# OWASP's table give for interactive logins.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SALT_BYTES = 16
MIN_PASSWORD = 10  # characters
NAME_MAX = 64


class WebUserError(BadInput):
    """A user that cannot be added: an unknown role, a bad name, a short password."""


@dataclass(frozen=True)
class WebUser:
    name: str
    role: str

    def may(self, change: str) -> bool:
        return self.role in PERMISSIONS[change]

    def actor(self) -> Actor:
        """Who an audit row names for a change made on the pages."""
        return Actor("musket-web", self.name)


def hash_password(password: str) -> str:
    salt = os.urandom(_SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                            p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


def add_user(engine: Engine, name: str, role: str, password: str, actor: Actor) -> WebUser:
    """Adds the operator, or sets a new role and password for one of that name; audited
    (without the password or its hash)."""
    name = name.strip()
    if not name or len(name) > NAME_MAX or not name.isprintable() or " " in name:
        raise WebUserError(f"user name {name!r}: 1 to {NAME_MAX} printable characters, "
                           "no spaces")
    if role not in ROLES:
        raise WebUserError(f"unknown role {role!r} (one of: {', '.join(ROLES)})")
    if len(password) < MIN_PASSWORD:
        raise WebUserError(f"the password is shorter than {MIN_PASSWORD} characters")
    at = datetime.now(UTC)
    hashed = hash_password(password)
    with engine.begin() as conn:
        old = conn.execute(select(web_users.c.role).where(web_users.c.name == name)).first()
        if old is None:
            conn.execute(insert(web_users).values(name=name, role=role, password_hash=hashed,
                                                  created=at, updated=at))
            changes = {"role": [None, role]}
        else:
            conn.execute(update(web_users).where(web_users.c.name == name)
                         .values(role=role, password_hash=hashed, updated=at))
            changes = {"role": [old.role, role], "password": "changed"}
        record_audit(conn, actor, "web-user", name, changes)
    return WebUser(name, role)


def login(engine: Engine, name: str, password: str) -> WebUser | None:
    """The user, if the name and password match; None otherwise (which of the two was wrong
    is not said)."""
    with engine.connect() as conn:
        row = conn.execute(select(web_users.c.role, web_users.c.password_hash)
                           .where(web_users.c.name == name)).first()
    if row is None:
        check_password(password, hash_password("not a user"))  # the same time either way
        return None
    return WebUser(name, row.role) if check_password(password, row.password_hash) else None


def user(engine: Engine, name: str) -> WebUser | None:
    """The logged-in user as stored now (a role changed meanwhile counts at once)."""
    with engine.connect() as conn:
        row = conn.execute(select(web_users.c.role).where(web_users.c.name == name)).first()
    return None if row is None else WebUser(name, row.role)


def users(engine: Engine) -> list[WebUser]:
    with engine.connect() as conn:
        return [WebUser(n, r) for n, r in conn.execute(
            select(web_users.c.name, web_users.c.role).order_by(web_users.c.name))]
