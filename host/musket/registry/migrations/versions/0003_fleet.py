"""The fleet service: each device's state and sessions, its telemetry stored once, rejected
messages, data per SIM per day, plans and their alerts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fleet_devices",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("last_seen", _TIME, nullable=False),
        sa.Column("status_at", _TIME),
        sa.Column("status_digest", sa.String(32)),
        sa.Column("firmware", sa.String(32)),
        sa.Column("boot_count", sa.Integer),
        sa.Column("reset_cause", sa.String(16)),
        sa.Column("reboot_reasons", sa.Text),
        sa.Column("crash_time", sa.BigInteger),
        sa.Column("crash", sa.Text),
        sa.Column("uptime_s", sa.BigInteger),
        sa.Column("session_s", sa.BigInteger),
        sa.Column("connect_failures", sa.Integer),
        sa.Column("rejects", sa.Text),
        sa.Column("heap_free", sa.Integer),
        sa.Column("heap_largest", sa.Integer),
        sa.Column("diagnosis", sa.Text),
        sa.Column("signal", sa.Float),
        sa.Column("data_tx", sa.BigInteger),
        sa.Column("data_rx", sa.BigInteger),
        sa.Column("data_paused", sa.Boolean, nullable=False),
    )
    op.create_table(
        "fleet_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("connected", _TIME, nullable=False),
        sa.Column("disconnected", _TIME),
        sa.Column("why", sa.String(16)),
    )
    op.create_index("ix_fleet_sessions_device_id", "fleet_sessions", ["device_id"])
    op.create_table(
        "fleet_messages",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("mseq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("leaf", sa.String(1), nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("received", _TIME, nullable=False),
    )
    op.create_table(
        "fleet_events",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("delta", sa.Float, nullable=False),
        sa.Column("total", sa.Float, nullable=False),
        sa.Column("info", sa.Text),
        sa.Column("closed", _TIME),
        sa.Column("closed_by", sa.String(64)),
    )
    op.create_table(
        "fleet_readings",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("rseq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("values_json", sa.Text, nullable=False),
    )
    op.create_table(
        "fleet_rejected",
        sa.Column("source", sa.String(128), primary_key=True),
        sa.Column("reason", sa.String(32), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first", _TIME, nullable=False),
        sa.Column("last", _TIME, nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_table(
        "fleet_usage",
        sa.Column("iccid", sa.String(20), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("device_tx", sa.BigInteger, nullable=False),
        sa.Column("device_rx", sa.BigInteger, nullable=False),
        sa.Column("carrier_bytes", sa.BigInteger),
    )
    op.create_table(
        "fleet_plans",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("monthly_fee", sa.Float, nullable=False),
        sa.Column("included_bytes", sa.BigInteger, nullable=False),
        sa.Column("overage_per_mb", sa.Float, nullable=False),
        sa.Column("pooled", sa.Boolean, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
    )
    op.create_table(
        "fleet_alerts",
        sa.Column("subject", sa.String(80), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("threshold", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("raised", _TIME, nullable=False),
        sa.Column("used_bytes", sa.BigInteger, nullable=False),
        sa.Column("included_bytes", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fleet_alerts")
    op.drop_table("fleet_plans")
    op.drop_table("fleet_usage")
    op.drop_table("fleet_rejected")
    op.drop_table("fleet_readings")
    op.drop_table("fleet_events")
    op.drop_table("fleet_messages")
    op.drop_table("fleet_sessions")
    op.drop_table("fleet_devices")
