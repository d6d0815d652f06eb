"""Metric buckets: each metric's points summarized per 64 and per 1,024 steps (count; first,
last, min and max point), so a 200,000-point series is read at chart size without scanning it
(runner.ledger.series). Existing points are summarized here, one run and metric at a time.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import itertools

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen with this revision (runner.ledger.series.LEVELS must stay equal to it: the buckets
# written here and those written at ingest have to be the same spans).
LEVELS = (64, 1024)
FIELDS = ("step", "tokens", "value")


def upgrade() -> None:
    cols = [
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("level", sa.Integer, primary_key=True),
        sa.Column("bucket", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    ]
    for which in ("first", "last", "min", "max"):
        cols += [
            sa.Column(f"{which}_step", sa.Integer, nullable=False),
            sa.Column(f"{which}_tokens", sa.Integer, nullable=False),
            sa.Column(f"{which}_value", sa.Float, nullable=False),
        ]
    table = op.create_table("metric_buckets", *cols, sqlite_with_rowid=False)
    conn = op.get_bind()
    # streamed (a statement option: on the connection it would stay for alembic's own SQL)
    rows = conn.execute(
        sa.text(
            "SELECT run_id, name, step, tokens, value FROM metric_points "
            "ORDER BY run_id, name, step"
        ).execution_options(yield_per=20_000)
    )
    batch = []
    coarse = LEVELS[-1]
    key = lambda r: (r[0], r[1], r[2] // coarse)  # noqa: E731
    for (run_id, name, _), group in itertools.groupby(rows, key=key):
        pts = [(r[2], r[3], r[4]) for r in group]
        for level in LEVELS:  # a coarse bucket holds whole fine ones
            for bucket, part in itertools.groupby(pts, key=lambda p, lv=level: p[0] // lv):
                batch.append(summary(run_id, name, level, bucket, list(part)))
        if len(batch) >= 5000:
            op.bulk_insert(table, batch)
            batch = []
    if batch:
        op.bulk_insert(table, batch)


def summary(run_id, name, level, bucket, pts) -> dict:
    b = {"run_id": run_id, "name": name, "level": level, "bucket": bucket, "n": len(pts)}
    picks = {
        "first": pts[0],
        "last": pts[-1],
        "min": min(pts, key=lambda p: (p[2], p[0])),
        "max": max(pts, key=lambda p: (p[2], -p[0])),
    }
    for which, p in picks.items():
        b.update({f"{which}_{f}": v for f, v in zip(FIELDS, p, strict=True)})
    return b


def downgrade() -> None:
    op.drop_table("metric_buckets")
