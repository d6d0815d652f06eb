"""The device an attempt ran on (host:gpuN) when runs share GPUs: the cost of each moment on a
shared GPU is split between the attempts on it then.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("device", sa.String, nullable=True))
    op.create_index("ix_attempts_device", "attempts", ["device"])


def downgrade() -> None:
    op.drop_index("ix_attempts_device", "attempts")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("device")
