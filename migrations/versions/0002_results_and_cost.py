"""Results (each run's final metrics.json) and per-run GPU-hours and cost.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "results",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("metrics_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("gpu_hours", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cost_usd")
        batch.drop_column("gpu_hours")
    op.drop_table("results")
