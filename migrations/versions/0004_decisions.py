"""Decisions apart from state: a run's stop request (the kill rule's verdict) and its plan,
stored at submit; each result's sample flag as a column (no JSON functions in queries).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("stop_reason", sa.Text, nullable=True))
        batch.add_column(sa.Column("plan_json", sa.Text, nullable=True))
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("sample", sa.Boolean, nullable=False, server_default=sa.false()))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT run_id, metrics_json FROM results")).all()
    for run_id, doc in rows:
        try:
            sample = bool((json.loads(doc).get("provenance") or {}).get("sample"))
        except (ValueError, AttributeError):
            continue
        if sample:
            conn.execute(
                sa.text("UPDATE results SET sample = :s WHERE run_id = :r"),
                {"s": True, "r": run_id},
            )


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_column("sample")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("plan_json")
        batch.drop_column("stop_reason")
