"""A warm pool refills itself: a worker that left idle is launched again when runs for workers
wait with no worker to take them (`replaced_by`: the worker that took its place, so that each
vacancy is filled once).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cloud_workers") as batch:
        batch.add_column(sa.Column("replaced_by", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cloud_workers") as batch:
        batch.drop_column("replaced_by")
