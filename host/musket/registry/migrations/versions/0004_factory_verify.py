"""End-of-line test results and which units may ship.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "eol_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"),
                  nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("codes", sa.Text, nullable=False),
        sa.Column("measurements", sa.Text, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
    )
    op.create_index("eol_results_device", "eol_results", ["device_id"])
    op.create_index("eol_results_at", "eol_results", ["at"])
    op.create_table(
        "eol_units",
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"),
                  primary_key=True),
        sa.Column("shippable", sa.Boolean, nullable=False),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("eol_results.id"), nullable=False),
        sa.Column("updated", _TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("eol_units")
    op.drop_index("eol_results_at", "eol_results")
    op.drop_index("eol_results_device", "eol_results")
    op.drop_table("eol_results")
