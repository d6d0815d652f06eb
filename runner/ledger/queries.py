"""Read-only questions to the ledger, for pages, reports, the kill rule and cost: plain rows and
dicts, no ORM objects where a page lists many rows. SQLAlchemy Core, so the same statements run
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.engine import Engine

from runner.ledger import series as series_store
from runner.ledger.models import (
    FINISHED,
    Attempt,
    Event,
    LatestMetric,
    MetricPoint,
    Result,
    Run,
    Sweep,
)

R = Run.__table__.c
S = Sweep.__table__.c
L = LatestMetric.__table__.c
P = MetricPoint.__table__.c
E = Event.__table__.c
RES = Result.__table__.c
A = Attempt.__table__.c


def _count_if(cond):
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _latest(name: str):
    """The latest value of one metric of the run in the outer query."""
    return (
        select(L.value)
        .where(L.run_id == R.id, L.name == name)
        .correlate(Run.__table__)
        .scalar_subquery()
    )


# ---------------------------------------------------------------- lists


def runs_page(
    engine: Engine,
    *,
    sweep: int | None = None,
    phase: str | None = None,
    status: str | None = None,
    limit: int = 200,
    since: float | None = None,
) -> tuple[list[dict], int]:
    """The newest `limit` runs matching the filters, with their latest metrics; and how many
    match. `since`: only those changed after that time (state, progress or a heartbeat)."""
    conds = []
    if sweep is not None:
        conds.append(R.sweep_id == sweep)
    if phase:
        conds.append(R.phase == phase)
    if status:
        conds.append(R.status == status)
    shown = list(conds)
    if since is not None:
        shown.append(or_(R.updated_at > since, R.last_heartbeat > since))
    q = (
        select(
            R.id,
            R.name,
            R.cell,
            R.sweep_id,
            R.phase,
            R.status,
            R.tokens_seen,
            R.max_tokens,
            R.cost_usd,
            R.gpu_hours,
            R.attempt,
            R.updated_at,
            _latest("dev/word_ppl"),
            _latest("train/tokens_per_s"),
            _latest("train/loss"),
        )
        .where(*shown)
        .order_by(R.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(Run.__table__).where(*conds)).scalar()
        rows = conn.execute(q).all()
    out = []
    for rid, name, cell, sw, ph, st, seen, mx, cost, gpu_h, attempt, upd, ppl, tps, loss in rows:
        out.append(
            {
                "id": rid,
                "name": name,
                "cell": cell or name,
                "sweep_id": sw,
                "phase": ph,
                "status": st,
                "tokens_seen": seen,
                "max_tokens": mx,
                "progress": min(1.0, seen / mx) if mx else 0.0,
                "tokens_per_s": tps,
                "eta_s": (mx - seen) / tps if tps and st == "running" and mx > seen else None,
                "dev_ppl": ppl,
                "train_loss": loss,
                "cost_usd": cost,
                "gpu_hours": gpu_h,
                "attempt": attempt,
                "updated": upd,
            }
        )
    return out, int(total)


def changed_runs(engine: Engine, since: float) -> list[int]:
    """Ids of every run changed after `since`, whatever the filters."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(R.id).where(or_(R.updated_at > since, R.last_heartbeat > since))
        ).all()
    return [r[0] for r in rows]


def runs_version(engine: Engine) -> tuple:
    """Changes whenever anything a run list shows changes (a run's state or progress, a new
    latest point): the live list's ETag. Aggregates over runs and latest_metrics, never over
    the points themselves."""
    with engine.connect() as conn:
        runs = conn.execute(
            select(func.count(), func.max(R.updated_at), func.sum(R.tokens_seen))
        ).one()
        latest = conn.execute(
            select(func.count(), func.coalesce(func.sum(L.step), 0)).select_from(
                LatestMetric.__table__
            )
        ).one()
    return (*runs, *latest)


PUBLIC_RUN = tuple(
    c
    for c in Run.__table__.c.keys()  # noqa: SIM118 (a ColumnCollection)
    if c not in ("spec_json", "plan_json", "token_hash")
)


def run_list(
    engine: Engine,
    *,
    status: str | None = None,
    sweep_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
    before_id: int | None = None,
    after_id: int | None = None,
    count: bool = True,
) -> tuple[list[dict], int | None]:
    """A page of runs as plain dicts (their public columns and `latest` metrics), newest
    first: two queries (the page, then its runs' latest values) and no ORM objects, so 1,000
    rows cost little. Keyset paging: `before_id` (the page after one that ended at that id) or
    `after_id` (ids above it, oldest first: every run exactly once while runs are added).
    `count`: also how many match the filters (None when not asked)."""
    conds = []
    if status:
        conds.append(R.status == status)
    if sweep_id is not None:
        conds.append(R.sweep_id == sweep_id)
    page = select(R.id).where(*conds)
    if after_id is not None:
        page = page.where(R.id > after_id).order_by(R.id)
    else:
        if before_id is not None:
            page = page.where(R.id < before_id)
        page = page.order_by(R.id.desc()).offset(offset if before_id is None else 0)
    page = page.limit(limit).subquery()
    with engine.connect() as conn:
        found = conn.execute(
            select(*(R[c] for c in PUBLIC_RUN)).join(page, page.c.id == R.id)
        ).all()
        # the page's latest values joined in SQL: no id list to expand into parameters
        latest_rows = conn.execute(
            select(L.run_id, L.name, L.value).join(page, page.c.id == L.run_id)
        ).all()
        total = (
            conn.execute(select(func.count()).select_from(Run.__table__).where(*conds)).scalar()
            if count
            else None
        )
    latest: dict[int, dict] = {}
    for rid, name, value in latest_rows:
        latest.setdefault(rid, {})[name] = value
    rows = [dict(zip(PUBLIC_RUN, r, strict=True)) for r in found]
    rows.sort(key=lambda r: r["id"], reverse=after_id is None)
    for r in rows:
        r["latest"] = latest.get(r["id"], {})
        r["is_baseline"] = bool(r["is_baseline"])
    return rows, total


def sweeps_overview(engine: Engine) -> list[dict]:
    q = (
        select(
            S.id,
            S.name,
            S.kind,
            S.phase,
            S.status,
            S.budget_usd,
            S.report_dir,
            func.count(R.id),
            _count_if(R.status.in_(FINISHED)),
            _count_if(R.status == "running"),
            _count_if(R.status == "killed"),
            func.coalesce(func.sum(R.cost_usd), 0.0),
            func.coalesce(func.sum(R.gpu_hours), 0.0),
        )
        .select_from(Sweep.__table__.outerjoin(Run.__table__, R.sweep_id == S.id))
        .group_by(S.id)
        .order_by(S.id.desc())
    )
    keys = (
        "id",
        "name",
        "kind",
        "phase",
        "status",
        "budget_usd",
        "report_dir",
        "runs",
        "finished",
        "running",
        "killed",
        "cost_usd",
        "gpu_hours",
    )
    with engine.connect() as conn:
        return [dict(zip(keys, r, strict=True)) for r in conn.execute(q).all()]


def status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(R.status, func.count()).group_by(R.status)).all()
    return {s: n for s, n in rows}


def badge_numbers(engine: Engine, *, sweep_id: int | None) -> dict | None:
    """Runs, running runs, spend, budget and phase: of one sweep (None when it does not exist),
    or of the whole ledger."""
    cols = (
        func.count(R.id),
        _count_if(R.status == "running"),
        func.coalesce(func.sum(R.cost_usd), 0.0),
    )
    with engine.connect() as conn:
        if sweep_id is None:
            n, running, cost = conn.execute(select(*cols)).one()
            return {
                "runs": n,
                "running": running,
                "cost_usd": cost,
                "budget_usd": None,
                "phase": "runs",
            }
        row = conn.execute(
            select(*cols, S.budget_usd, S.phase)
            .select_from(Sweep.__table__.outerjoin(Run.__table__, R.sweep_id == S.id))
            .where(S.id == sweep_id)
            .group_by(S.id)
        ).first()
    if row is None:
        return None
    n, running, cost, budget, phase = row
    return {"runs": n, "running": running, "cost_usd": cost, "budget_usd": budget, "phase": phase}


def has_sample_results(engine: Engine, sweep_id: int | None = None) -> bool:
    """Whether any result (of the ledger, or of one sweep) was made from sample data."""
    q = select(RES.run_id).where(RES.sample.is_(True))
    if sweep_id is not None:
        q = q.join(Run.__table__, R.id == RES.run_id).where(R.sweep_id == sweep_id)
    with engine.connect() as conn:
        return conn.execute(q.limit(1)).first() is not None


# ---------------------------------------------------------------- one run


def run_detail(engine: Engine, run_id: int) -> dict | None:
    cols = (
        R.id,
        R.name,
        R.cell,
        R.sweep_id,
        R.phase,
        R.status,
        R.spec_json,
        R.plan_json,
        R.tokens_seen,
        R.max_tokens,
        R.attempt,
        R.launcher,
        R.backend_id,
        R.run_dir,
        R.created_at,
        R.started_at,
        R.finished_at,
        R.last_heartbeat,
        R.exit_reason,
        R.stop_reason,
        R.is_baseline,
        R.cost_usd,
        R.gpu_hours,
        RES.metrics_json,
    )
    with engine.connect() as conn:
        row = conn.execute(
            select(*cols)
            .select_from(Run.__table__.outerjoin(Result.__table__, RES.run_id == R.id))
            .where(R.id == run_id)
        ).first()
        if row is None:
            return None
        latest = dict(conn.execute(select(L.name, L.value).where(L.run_id == run_id)).all())
    d: dict[str, Any] = dict(row._mapping)
    d["config"] = json.loads(d.pop("spec_json"))
    plan = d.pop("plan_json")
    d["plan"] = json.loads(plan) if plan else None
    mj = d.pop("metrics_json")
    d["result"] = json.loads(mj) if mj else None
    d["latest"] = latest
    return d


def baseline_run(
    engine: Engine, *, sweep_id: int | None, phase: str | None, seed: int | None = None
) -> int | None:
    """The run a sweep phase's cells are compared with: its baseline, the same seed first."""
    if sweep_id is None:
        return None
    order = [R.id]
    if seed is not None:
        order.insert(0, case((R.seed == seed, 0), else_=1))
    with engine.connect() as conn:
        row = conn.execute(
            select(R.id)
            .where(R.sweep_id == sweep_id, R.phase.is_not_distinct_from(phase), R.is_baseline)
            .order_by(*order)
            .limit(1)
        ).first()
    return row[0] if row else None


def baseline_runs(engine: Engine, *, sweep_id: int, phase: str | None) -> list[int]:
    """Every baseline run of a sweep phase (one per seed), lowest seed first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(R.id)
            .where(R.sweep_id == sweep_id, R.phase.is_not_distinct_from(phase), R.is_baseline)
            .order_by(R.seed, R.id)
        ).all()
    return [r[0] for r in rows]


def curve(engine: Engine, run_id: int, name: str) -> list[tuple[int, float]]:
    """(tokens, value) of one metric, by tokens."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(P.tokens, P.value).where(P.run_id == run_id, P.name == name).order_by(P.tokens)
        ).all()
    return [(int(t), float(v)) for t, v in rows]


def series_points(
    engine: Engine, run_id: int, name: str, max_points: int = 400
) -> list[tuple[int, int, float]]:
    """(step, tokens, value) of one metric by step, at most `max_points` (runner.ledger.series:
    first and last kept, each span's min and max)."""
    return series_store.read(engine, run_id, name, max_points).points


def version(engine: Engine, run_id: int) -> tuple:
    """Changes whenever a new point or a state change arrives: the chart cache's key."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                select(
                    select(func.coalesce(func.max(L.step), -1))
                    .where(L.run_id == run_id)
                    .scalar_subquery(),
                    select(func.count())
                    .select_from(LatestMetric.__table__)
                    .where(L.run_id == run_id)
                    .scalar_subquery(),
                    select(R.updated_at).where(R.id == run_id).scalar_subquery(),
                )
            ).one()
        )


def event_dicts(
    engine: Engine, *, run_id: int | None = None, sweep_id: int | None = None
) -> list[dict]:
    q = select(E.id, E.run_id, E.time, E.kind, E.from_status, E.to_status, E.reason, E.data_json)
    q = q.where(E.run_id == run_id) if run_id is not None else q.where(E.sweep_id == sweep_id)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(E.id)).all()
    return [
        {
            "id": r[0],
            "run_id": r[1],
            "time": r[2],
            "kind": r[3],
            "from": r[4],
            "to": r[5],
            "reason": r[6],
            "data": json.loads(r[7]) if r[7] else None,
        }
        for r in rows
    ]


# ---------------------------------------------------------------- reports and cost


def results_rows(
    engine: Engine,
    *,
    sweep_id: int | None = None,
    after_id: int | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Every run (of a sweep, or all) with its spec, plan and final metrics document, by id;
    `after_id`/`limit` page through them (a streamed export holds one page at a time)."""
    q = (
        select(
            R.id,
            R.name,
            R.sweep_id,
            R.phase,
            R.status,
            R.spec_json,
            R.plan_json,
            R.tokens_seen,
            R.gpu_hours,
            R.cost_usd,
            R.exit_reason,
            R.run_dir,
            R.cell,
            R.axis,
            R.is_baseline,
            RES.metrics_json,
        )
        .select_from(Run.__table__.outerjoin(Result.__table__, RES.run_id == R.id))
        .order_by(R.id)
    )
    if sweep_id is not None:
        q = q.where(R.sweep_id == sweep_id)
    if after_id is not None:
        q = q.where(R.id > after_id)
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    out = []
    for r in rows:
        d = dict(r._mapping)
        d["config"] = json.loads(d.pop("spec_json"))
        plan = d.pop("plan_json")
        d["plan"] = json.loads(plan) if plan else None
        mj = d.pop("metrics_json")
        d["metrics"] = json.loads(mj) if mj else None
        out.append(d)
    return out


def curves(engine: Engine, *, name: str, sweep_id: int | None = None) -> dict[int, list]:
    """{run id: [(tokens, value), ...]} of one metric, for the runs of a sweep (or all)."""
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


def sweep_cost_rows(engine: Engine, *, sweep_id: int) -> tuple[list[dict], float | None]:
    """(runs with their attempts, hours and cost; the sweep's budget)."""
    keys = (
        "id",
        "name",
        "phase",
        "status",
        "attempts",
        "gpu_hours",
        "cost_usd",
        "max_tokens",
        "tokens_seen",
        "priority",
        "cell",
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                R.id,
                R.name,
                R.phase,
                R.status,
                R.attempt,
                R.gpu_hours,
                R.cost_usd,
                R.max_tokens,
                R.tokens_seen,
                R.priority,
                R.cell,
            )
            .where(R.sweep_id == sweep_id)
            .order_by(R.id)
        ).all()
        budget = conn.execute(select(S.budget_usd).where(S.id == sweep_id)).scalar()
    return [dict(zip(keys, r, strict=True)) for r in rows], budget


def cost_overview(engine: Engine) -> dict:
    with engine.connect() as conn:
        by_run = conn.execute(
            select(R.id, R.name, R.sweep_id, R.phase, R.status, R.gpu_hours, R.cost_usd)
            .order_by(R.cost_usd.desc(), R.id.desc())
            .limit(500)
        ).all()
        phase = func.coalesce(R.phase, "-")
        by_phase = conn.execute(
            select(R.sweep_id, phase, func.count(), func.sum(R.gpu_hours), func.sum(R.cost_usd))
            .group_by(R.sweep_id, phase)
            .order_by(R.sweep_id, phase)
        ).all()
        total = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(R.gpu_hours), 0.0),
                func.coalesce(func.sum(R.cost_usd), 0.0),
            )
        ).one()
    run_keys = ("id", "name", "sweep_id", "phase", "status", "gpu_hours", "cost_usd")
    phase_keys = ("sweep_id", "phase", "runs", "gpu_hours", "cost_usd")
    return {
        "runs": [dict(zip(run_keys, r, strict=True)) for r in by_run],
        "phases": [dict(zip(phase_keys, r, strict=True)) for r in by_phase],
        "total": {"runs": total[0], "gpu_hours": total[1], "cost_usd": total[2]},
    }


def mean_latest(engine: Engine, *, sweep_id: int, name: str) -> float | None:
    """The mean of one metric's latest value over a sweep's runs (e.g. measured tokens/s)."""
    with engine.connect() as conn:
        v = conn.execute(
            select(func.avg(L.value))
            .select_from(LatestMetric.__table__.join(Run.__table__, R.id == L.run_id))
            .where(R.sweep_id == sweep_id, L.name == name)
        ).scalar()
    return float(v) if v else None


def attempt_rows(
    engine: Engine, *, sweep_id: int | None = None, run_id: int | None = None
) -> list[dict]:
    """Every attempt (of a sweep's runs, or of one run): where it ran, on what, for how long,
    at what price, with what outcome and cost."""
    q = (
        select(
            A.run_id,
            A.attempt,
            A.launcher,
            A.backend_id,
            A.accelerator,
            A.gpus,
            A.device,
            A.spot,
            A.price_per_hour,
            A.price_source,
            A.started_at,
            A.ended_at,
            A.outcome,
            A.seconds,
            A.gpu_hours,
            A.cost_usd,
        )
        .select_from(Attempt.__table__.join(Run.__table__, R.id == A.run_id))
        .order_by(A.run_id, A.attempt)
    )
    if sweep_id is not None:
        q = q.where(R.sweep_id == sweep_id)
    if run_id is not None:
        q = q.where(A.run_id == run_id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q).all()]


def measured_tokens_per_s(
    engine: Engine, *, accelerator: str | None, sweep_id: int | None = None
) -> float | None:
    """The mean measured training speed of runs whose attempts ran on `accelerator` (a
    sweep's, or the whole ledger's), or None when none has been measured."""
    ran_on = select(A.run_id).where(A.accelerator.is_not_distinct_from(accelerator))
    q = (
        select(func.avg(L.value))
        .select_from(LatestMetric.__table__.join(Run.__table__, R.id == L.run_id))
        .where(L.name == "train/tokens_per_s", L.run_id.in_(ran_on))
    )
    if sweep_id is not None:
        q = q.where(R.sweep_id == sweep_id)
    with engine.connect() as conn:
        v = conn.execute(q).scalar()
    return float(v) if v else None


def ledger_id(engine: Engine) -> str | None:
    from runner.ledger.models import LedgerInfo

    t = LedgerInfo.__table__.c
    with engine.connect() as conn:
        return conn.execute(select(t.value).where(t.key == "ledger_id")).scalar()
