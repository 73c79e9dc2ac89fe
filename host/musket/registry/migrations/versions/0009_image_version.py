"""The firmware image's version each device reports (its status's "im"), apart from its
application's, so that the fleet sees which MicroPython image its devices run.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("fleet_devices", sa.Column("image", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("fleet_devices") as batch:
        batch.drop_column("image")
