"""Plans: each run's cell, axis and baseline flag; each sweep's phase, report folder and budget;
one run per (sweep, phase, cell, seed).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("cell", sa.String, nullable=True))
        batch.add_column(sa.Column("axis", sa.String, nullable=True))
        batch.add_column(
            sa.Column("is_baseline", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_index(
        "ux_runs_cell",
        "runs",
        ["sweep_id", "phase", "cell", "seed"],
        unique=True,
        sqlite_where=sa.text("sweep_id IS NOT NULL AND cell IS NOT NULL"),
    )
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("phase", sa.String, nullable=False, server_default="ranking"))
        batch.add_column(sa.Column("report_dir", sa.String, nullable=True))
        batch.add_column(sa.Column("budget_usd", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("budget_usd")
        batch.drop_column("report_dir")
        batch.drop_column("phase")
    op.drop_index("ux_runs_cell", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("is_baseline")
        batch.drop_column("axis")
        batch.drop_column("cell")
