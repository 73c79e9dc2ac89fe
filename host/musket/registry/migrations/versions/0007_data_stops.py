"""The carrier's data stops a device has reported (its status's "ds"), so the fleet service
can tell a new one and name it in the connection history.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("fleet_devices", sa.Column("data_stops", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("fleet_devices") as batch:
        batch.drop_column("data_stops")
