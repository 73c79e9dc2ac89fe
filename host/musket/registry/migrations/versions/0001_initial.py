"""The first schema: devices, SIMs, bindings history, credentials, append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_STATES = "'inventory', 'bound', 'active', 'suspended', 'retired'"

# The audit log is append-only in the database itself, not only in musket's code: another
# program with write access to the registry cannot edit or delete what happened either.
_SQLITE_GUARDS = [
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
]
_POSTGRES_GUARDS = [
    "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
    "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit "
    "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "sims",
        sa.Column("iccid", sa.String(20), primary_key=True),
        sa.Column("plan", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("imsi", sa.String(15)),
        sa.Column("updated", _TIME, nullable=False),
        sa.CheckConstraint(f"state IN ({_STATES})", name="sim_state_known"),
    )
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("imei", sa.String(15), nullable=False, unique=True),
        sa.Column("iccid", sa.String(20), sa.ForeignKey("sims.iccid"), unique=True),
        sa.Column("imsi", sa.String(15)),
        sa.Column("board", sa.String(64)),
        sa.Column("chip_id", sa.String(32), nullable=False, unique=True),
        sa.Column("created", _TIME, nullable=False),
    )
    op.create_table(
        "bindings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"),
                  nullable=False),
        sa.Column("iccid", sa.String(20), sa.ForeignKey("sims.iccid"), nullable=False),
        sa.Column("imei", sa.String(15), nullable=False),
        sa.Column("bound", _TIME, nullable=False),
        sa.Column("unbound", _TIME),
        sa.Column("reason", sa.Text),
    )
    op.create_index("bindings_by_device", "bindings", ["device_id"])
    op.create_index("bindings_by_iccid", "bindings", ["iccid"])
    op.create_table(
        "credentials",
        sa.Column("username", sa.String(64), sa.ForeignKey("devices.device_id"),
                  primary_key=True),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("secret_check", sa.String(64), nullable=False),
        sa.Column("issued", _TIME, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("changes", sa.Text, nullable=False),
    )
    op.create_index("audit_by_subject", "audit", ["subject"])
    guards = {"sqlite": _SQLITE_GUARDS, "postgresql": _POSTGRES_GUARDS}
    for statement in guards.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_no_truncate ON audit")
        op.execute("DROP TRIGGER audit_no_change ON audit")
        op.execute("DROP FUNCTION audit_append_only()")
    for table in ("audit", "credentials", "bindings", "devices", "sims"):
        op.drop_table(table)
