"""One metric's series, read at the size a chart needs, whatever its length.

A run that logs every step for a long time has 100k+ points per metric; reading them all to
draw 500 cost 0.4 s and 40 MiB per request. So every point also lands in a *bucket* at two
levels, of 64 and of 1,024 steps (`metric_buckets`: count, first, last, min and max point),
kept at ingest by one upsert per touched bucket. A read of a long series takes the coarsest
level that still has a bucket per span (a 200k-point series: 196 rows, not 200k), groups them
into about max_points / 3 spans and keeps each span's min, max and last point, plus the
series' first point: the envelope of a spiky loss survives, memory stays small, and the first
and last points are always there. A short series is read whole (and thinned the same way if
it is over max_points). The API and the dashboard both read through here; the kill rule
and the reports read whole curves by tokens (`curve`, `curves`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine

from runner.ledger.models import MetricPoint, Run

LEVELS = (64, 1024)  # steps per bucket, fine to coarse (migration 0007 froze the same)
RAW_FACTOR = 8  # a series of up to 8 x max_points points is read whole: cheaper than buckets
COLS = (
    "n",
    "first_step",
    "first_tokens",
    "first_value",
    "last_step",
    "last_tokens",
    "last_value",
    "min_step",
    "min_tokens",
    "min_value",
    "max_step",
    "max_tokens",
    "max_value",
)


def _keep(old: str, new: str, cmp: str) -> str:
    """SET clauses of an upsert that keep the new point's fields when `cmp` holds for it."""
    cond = {
        "first": "excluded.first_step < metric_buckets.first_step",
        "last": "excluded.last_step > metric_buckets.last_step",
        "min": "excluded.min_value < metric_buckets.min_value",
        "max": "excluded.max_value > metric_buckets.max_value",
    }[cmp]
    return ", ".join(
        f"{old}_{f} = CASE WHEN {cond} THEN excluded.{new}_{f} ELSE metric_buckets.{old}_{f} END"
        for f in ("step", "tokens", "value")
    )


_INSERT = (
    "INSERT INTO metric_buckets (run_id, name, level, bucket, "
    + ", ".join(COLS)
    + ") VALUES (:run_id, :name, :level, :bucket, "
    + ", ".join(f":{c}" for c in COLS)
    + ") ON CONFLICT (run_id, name, level, bucket) DO UPDATE SET "
)
# New points only: every field is a running min/max/count, so concurrent writers (PostgreSQL
# replicas) each add theirs atomically.
ADD_TO_BUCKET = text(
    _INSERT
    + "n = metric_buckets.n + excluded.n, "
    + ", ".join(_keep(k, k, k) for k in ("first", "last", "min", "max"))
)
# Recomputed from the points themselves (after a post that repeated points: their count must
# not be added twice).
SET_BUCKET = text(_INSERT + ", ".join(f"{c} = excluded.{c}" for c in COLS))
BUCKET_POINTS = text(
    "SELECT step, tokens, value FROM metric_points WHERE run_id = :run_id AND name = :name "
    "AND step >= :lo AND step < :hi ORDER BY step"
)


def summarize(points: list[tuple[int, int, float]]) -> dict:
    """A bucket's fields from its points (step, tokens, value), in step order."""
    first, last = points[0], points[-1]
    lo = min(points, key=lambda p: (p[2], p[0]))
    hi = max(points, key=lambda p: (p[2], -p[0]))
    out = {"n": len(points)}
    for key, p in (("first", first), ("last", last), ("min", lo), ("max", hi)):
        out.update({f"{key}_step": p[0], f"{key}_tokens": p[1], f"{key}_value": p[2]})
    return out


def add_points(conn: Connection, run_id: int, rows: list[tuple], all_new: bool) -> None:
    """Fold stored points (name, step, tokens, value) into their buckets, in the caller's
    transaction. `all_new`: every row was a new point; else the touched buckets are
    recomputed from the table (a repeated post must not count twice)."""
    groups: dict[tuple[str, int, int], list[tuple[int, int, float]]] = {}
    for name, step, tokens, value in rows:
        for level in LEVELS:
            groups.setdefault((name, level, step // level), []).append((step, tokens, value))
    params = []
    for (name, level, bucket), pts in sorted(groups.items()):
        if not all_new:
            lo = bucket * level
            pts = conn.execute(
                BUCKET_POINTS, {"run_id": run_id, "name": name, "lo": lo, "hi": lo + level}
            ).all()
            pts = [tuple(p) for p in pts]
        else:
            pts = sorted(set(pts))
        params.append(
            {"run_id": run_id, "name": name, "level": level, "bucket": bucket, **summarize(pts)}
        )
    if params:
        conn.execute(ADD_TO_BUCKET if all_new else SET_BUCKET, params)


# ---------------------------------------------------------------- reads


@dataclass
class Series:
    points: list[tuple[int, int, float]]  # (step, tokens, value), by step
    total: int  # points stored (after `after_step`, when given)

    @property
    def downsampled(self) -> bool:
        return len(self.points) < self.total


def _envelope(spans: list[list[tuple]], first, last) -> list[tuple]:
    """min, max and last point of each span (each a list of (step, tokens, value)), the
    series' first and last points, in step order without repeats."""
    keep = {first, last}
    for span in spans:
        keep.add(min(span, key=lambda p: (p[2], p[0])))
        keep.add(max(span, key=lambda p: (p[2], -p[0])))
        keep.add(span[-1])
    return sorted(keep)


def _fill(make, units: int, max_points: int) -> list[tuple]:
    """make(spans) with as many spans as fit: a span gives up to 3 points (min, max, last), but
    on a smooth curve its min or max is its last, so more spans fit in max_points."""
    spans = max(1, (max_points - 2) // 3)
    best = make(spans)
    while len(best) < 0.75 * max_points and spans < units:
        spans = min(units, int(spans * 1.3) + 1)
        more = make(spans)
        if len(more) > max_points:
            break
        best = more
    return best


def thin(points: list[tuple], max_points: int) -> list[tuple]:
    """At most `max_points` of `points` (in step order): the envelope of equal-count spans."""
    if len(points) <= max_points:
        return points

    def make(spans):
        size = math.ceil(len(points) / spans)
        chunks = [points[i : i + size] for i in range(0, len(points), size)]
        return _envelope(chunks, points[0], points[-1])

    return _fill(make, len(points), max_points)


SHAPE = text(
    "SELECT level, count(*), sum(n) FROM metric_buckets "
    "WHERE run_id = :run_id AND name = :name GROUP BY level"
)
BUCKETS = text(
    "SELECT bucket, " + ", ".join(COLS) + " FROM metric_buckets "
    "WHERE run_id = :run_id AND name = :name AND level = :level ORDER BY bucket"
)
RAW = text(
    "SELECT step, tokens, value FROM metric_points WHERE run_id = :run_id AND name = :name "
    "AND step > :after ORDER BY step"
)


def read(
    engine: Engine, run_id: int, name: str, max_points: int = 500, after_step: int | None = None
) -> Series:
    """At most `max_points` points of one metric (first and last kept, each span's min and
    max kept). `after_step`: only the points after that step (a live chart's new tail)."""
    max_points = max(2, max_points)
    key = {"run_id": run_id, "name": name}
    with engine.connect() as conn:
        if after_step is not None:  # a live chart's tail: a few points since its last read
            rows = [
                tuple(r)
                for r in conn.execute(RAW, {"run_id": run_id, "name": name, "after": after_step})
            ]
            return Series(thin(rows, max_points), len(rows))
        shape = {lv: (count, n) for lv, count, n in conn.execute(SHAPE, key)}
        total = shape[LEVELS[0]][1] if shape else 0
        spans = max(1, (max_points - 2) // 3)
        # the coarsest level with a bucket per span; a short series (or one too sparse for
        # even the fine level) is read whole
        level = next((lv for lv in reversed(LEVELS) if shape.get(lv, (0,))[0] >= spans), None)
        if total <= RAW_FACTOR * max_points or level is None:
            rows = conn.execute(RAW, {**key, "after": -(2**62)})
            return Series(thin([tuple(r) for r in rows], max_points), total)
        buckets = [tuple(r) for r in conn.execute(BUCKETS, {**key, "level": level})]
    return Series(_fill(lambda k: _group(buckets, k), len(buckets), max_points), total)


def _points_of(b: tuple) -> tuple[tuple, tuple, tuple, tuple]:
    """first, last, min, max of a bucket row (bucket, n, first_*, last_*, min_*, max_*)."""
    return b[2:5], b[5:8], b[8:11], b[11:14]


def _group(buckets: list[tuple], spans: int) -> list[tuple]:
    size = math.ceil(len(buckets) / spans)
    keep = {_points_of(buckets[0])[0], _points_of(buckets[-1])[1]}
    for i in range(0, len(buckets), size):
        group = [_points_of(b) for b in buckets[i : i + size]]
        keep.add(min((g[2] for g in group), key=lambda p: (p[2], p[0])))
        keep.add(max((g[3] for g in group), key=lambda p: (p[2], -p[0])))
        keep.add(group[-1][1])
    return sorted(keep)


P = MetricPoint.__table__.c


def curve(engine: Engine, run_id: int, name: str) -> list[tuple[int, float]]:
    """(tokens, value) of one metric of one run, whole, by tokens."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(P.tokens, P.value).where(P.run_id == run_id, P.name == name).order_by(P.tokens)
        ).all()
    return [(int(t), float(v)) for t, v in rows]


def curves(engine: Engine, *, name: str, sweep_id: int | None = None) -> dict[int, list]:
    """{run id: [(tokens, value), ...]} of one metric, for the runs of a sweep (or all)."""
    R = Run.__table__.c
    q = (
        select(P.run_id, P.tokens, P.value)
        .select_from(MetricPoint.__table__.join(Run.__table__, R.id == P.run_id))
        .where(P.name == name)
        .order_by(P.run_id, P.tokens)
    )
    if sweep_id is not None:
        q = q.where(R.sweep_id == sweep_id)
    out: dict[int, list] = {}
    with engine.connect() as conn:
        for rid, t, v in conn.execute(q):
            out.setdefault(rid, []).append((int(t), float(v)))
    return out
