"""Update campaigns: a bundle rolled out to devices in stages, and each device's state in it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ota_campaigns",
        sa.Column("name", sa.String(28), primary_key=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("bundle_sha256", sa.String(64), nullable=False),
        sa.Column("stages", sa.Text, nullable=False),
        sa.Column("abort_after", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created", _TIME, nullable=False),
        sa.Column("updated", _TIME, nullable=False),
    )
    op.create_table(
        "ota_devices",
        sa.Column("campaign", sa.String(28), sa.ForeignKey("ota_campaigns.name"),
                  primary_key=True),
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("stage", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("updated", _TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ota_devices")
    op.drop_table("ota_campaigns")
