"""The team pages' table (musket fleet web): the operators who may log in, each with one role
(musket.web.users.ROLES decides what a role may change). Defined on the registry's MetaData
beside the other parts' tables, in one database and one migration chain (revision 0006).

A password is kept only as its scrypt hash (salt and parameters in the stored line), never as
itself.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, String, Table, Text

from musket.registry.schema import metadata

web_users = Table(
    "web_users", metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("password_hash", Text, nullable=False),  # "scrypt$n$r$p$salt$hash" (hex)
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)
