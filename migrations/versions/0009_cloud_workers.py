"""Warm GPU workers on SkyPilot (`pax cloud up`): one row per worker job, with its VM time and
cost as SkyPilot's records showed them (kept as seen, so a restart of the service loses none).

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
    op.create_table(
        "cloud_workers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("accelerator", sa.String, nullable=False),
        sa.Column("spot", sa.Boolean, nullable=False),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("idle_exit_s", sa.Float, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("backend_id", sa.String, nullable=True),
        sa.Column("launch_errors", sa.Integer, nullable=False),
        sa.Column("not_before", sa.Float, nullable=True),
        sa.Column("down_requested", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("provisioned_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("recoveries", sa.Integer, nullable=False),
        sa.Column("vm_seconds", sa.Float, nullable=False),
        sa.Column("price_per_hour", sa.Float, nullable=True),
        sa.Column("price_source", sa.String, nullable=True),
        sa.Column("cost_usd", sa.Float, nullable=False),
    )
    op.create_index("ix_cloud_workers_name", "cloud_workers", ["name"])
    op.create_index("ix_cloud_workers_status", "cloud_workers", ["status"])


def downgrade() -> None:
    op.drop_index("ix_cloud_workers_status", "cloud_workers")
    op.drop_index("ix_cloud_workers_name", "cloud_workers")
    op.drop_table("cloud_workers")
