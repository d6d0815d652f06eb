"""Attempts and where runs go: one row per attempt of a run (its launcher, backend, the
resources it actually ran on, its price, start, end, outcome and cost); the launcher a run asks
for; when its current attempt started running; and the ledger's own id (cloud bucket names are
derived from it, so two ledgers never share one).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_info",
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.bulk_insert(
        sa.table("ledger_info", sa.column("key", sa.String), sa.column("value", sa.Text)),
        [{"key": "ledger_id", "value": uuid.uuid4().hex}],
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("launcher", sa.String, nullable=True),
        sa.Column("backend_id", sa.String, nullable=True),
        sa.Column("accelerator", sa.String, nullable=True),
        sa.Column("gpus", sa.Float, nullable=False, server_default="1"),
        sa.Column("spot", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("resources", sa.Text, nullable=True),
        sa.Column("price_per_hour", sa.Float, nullable=True),
        sa.Column("price_source", sa.String, nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("outcome", sa.String, nullable=True),
        sa.Column("seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("gpu_hours", sa.Float, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    )
    op.create_index("ix_attempts_run_id", "attempts", ["run_id"])
    op.create_index("ux_attempts_run_attempt", "attempts", ["run_id", "attempt"], unique=True)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("launcher_wanted", sa.String, nullable=True))
        batch.add_column(sa.Column("running_since", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("running_since")
        batch.drop_column("launcher_wanted")
    op.drop_index("ux_attempts_run_attempt", "attempts")
    op.drop_index("ix_attempts_run_id", "attempts")
    op.drop_table("attempts")
    op.drop_table("ledger_info")
