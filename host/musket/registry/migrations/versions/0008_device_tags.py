"""Device tags: free labels that pick a cohort for an update campaign or a bulk SIM change.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_tags",
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.device_id"),
                  primary_key=True),
        sa.Column("tag", sa.String(32), primary_key=True),
        sa.Column("added", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_device_tags_tag", "device_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_device_tags_tag", "device_tags")
    op.drop_table("device_tags")
