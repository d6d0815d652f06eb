"""Initial ledger: sweeps, runs, metric points, latest metrics, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False, server_default="plan"),
        sa.Column("spec_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("status", sa.String, nullable=False, server_default="active"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("spec_hash", sa.String, nullable=False),
        sa.Column("sweep_id", sa.Integer, sa.ForeignKey("sweeps.id"), nullable=True),
        sa.Column("phase", sa.String, nullable=True),
        sa.Column("seed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.String, nullable=False, server_default="queued"),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("launcher", sa.String, nullable=True),
        sa.Column("backend_id", sa.String, nullable=True),
        sa.Column("run_dir", sa.String, nullable=True),
        sa.Column("token_hash", sa.String, nullable=True),
        sa.Column("max_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tokens_seen", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("last_heartbeat", sa.Float, nullable=True),
        sa.Column("exit_reason", sa.Text, nullable=True),
    )
    op.create_index("ix_runs_spec_hash", "runs", ["spec_hash"])
    op.create_index("ix_runs_sweep_id", "runs", ["sweep_id"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_queue", "runs", ["status", "priority", "created_at"])
    op.create_table(
        "metric_points",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "latest_metrics",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=True),
        sa.Column("sweep_id", sa.Integer, sa.ForeignKey("sweeps.id"), nullable=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("from_status", sa.String, nullable=True),
        sa.Column("to_status", sa.String, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("data_json", sa.Text, nullable=True),
    )
    op.create_index("ix_events_run_id", "events", ["run_id"])
    op.create_index("ix_events_sweep_id", "events", ["sweep_id"])


def downgrade() -> None:
    for table in ("events", "latest_metrics", "metric_points", "runs", "sweeps"):
        op.drop_table(table)
