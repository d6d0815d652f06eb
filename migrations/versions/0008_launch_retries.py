"""Launch errors wait instead of failing runs: a queued run's earliest next launch
(`not_before`) and its launch errors in a row (`launch_errors`, for the back-off), and the
reason a sweep is paused (`paused_reason`: a launch error that will not pass by itself, such
as a missing credential, pauses the sweep until a user resumes it).

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
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("not_before", sa.Float, nullable=True))
        batch.add_column(sa.Column("launch_errors", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("paused_reason", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("paused_reason")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("launch_errors")
        batch.drop_column("not_before")
