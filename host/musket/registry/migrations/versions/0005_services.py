"""The services: customers and sites, the rules engine's cursors, triggers and outbox,
orders of consumables, technician tickets, tariffs, unexpected reboots seen.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "svc_customers",
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
    )
    op.create_table(
        "svc_sites",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("product", sa.String(32), nullable=False),
        sa.Column("location", sa.String(128), nullable=False),
    )
    op.create_table(
        "svc_cursors",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("position", sa.Float, nullable=False),
    )
    op.create_table(
        "svc_triggers",
        sa.Column("rule", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(64), primary_key=True),
        sa.Column("occurrence", sa.String(64), primary_key=True),
        sa.Column("fired", _TIME, nullable=False),
    )
    op.create_table(
        "svc_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(160), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("next_at", _TIME, nullable=False),
        sa.Column("claimed_until", _TIME),
        sa.Column("reason", sa.Text),
        sa.Column("created", _TIME, nullable=False),
        sa.Column("done", _TIME),
    )
    op.create_table(
        "svc_consumables",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("consumable", sa.String(32), primary_key=True),
        sa.Column("counter", sa.String(32), nullable=False),
        sa.Column("installed_total", sa.Float, nullable=False),
        sa.Column("installed", _TIME, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
    )
    op.create_table(
        "svc_orders",
        sa.Column("order_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("consumable", sa.String(32), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("quantity", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("placed", _TIME, nullable=False),
        sa.Column("shipped", _TIME),
        sa.Column("installed", _TIME),
        sa.Column("runout_predicted", _TIME),
        sa.Column("arrives", _TIME, nullable=False),
        sa.UniqueConstraint("device_id", "consumable", "generation"),
    )
    op.create_table(
        "svc_tickets",
        sa.Column("ticket_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("problem", sa.String(64), nullable=False),
        sa.Column("codes", sa.Text, nullable=False),
        sa.Column("repair", sa.Text, nullable=False),
        sa.Column("parts", sa.Text, nullable=False),
        sa.Column("location", sa.String(128), nullable=False),
        sa.Column("connections", sa.Text, nullable=False),
        sa.Column("opened", _TIME, nullable=False),
        sa.Column("closed", _TIME),
    )
    op.create_table(
        "svc_tariffs",
        sa.Column("scope", sa.String(100), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("minimum", sa.Float, nullable=False),
        sa.Column("prices", sa.Text, nullable=False),
    )
    op.create_table(
        "svc_reboots",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("boot", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
    )
    op.create_index("ix_svc_sites_customer_id", "svc_sites", ["customer_id"])
    op.create_index("ix_svc_outbox_state", "svc_outbox", ["state"])
    op.create_index("ix_svc_orders_device_id", "svc_orders", ["device_id"])
    op.create_index("ix_svc_tickets_device_id", "svc_tickets", ["device_id"])


def downgrade() -> None:
    op.drop_table("svc_reboots")
    op.drop_table("svc_tariffs")
    op.drop_table("svc_tickets")
    op.drop_table("svc_orders")
    op.drop_table("svc_consumables")
    op.drop_table("svc_outbox")
    op.drop_table("svc_triggers")
    op.drop_table("svc_cursors")
    op.drop_table("svc_sites")
    op.drop_table("svc_customers")
