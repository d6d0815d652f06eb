"""Runs: their rows, read and written, except their status (runner.ledger.lifecycle changes it).
One reader per question: a run (`get_run`, or `run_ref` on the trainer-facing hot path), a run
with its result and latest values (`run_detail`), a page of runs (`run_list`), the runs a
scheduler or launcher asks about. Keyword-only arguments; plain dicts where a page lists many.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, case, func, or_, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from sqlmodel import select as orm_select

from runner.ledger.db import lock_run, write_session
from runner.ledger.errors import NotFound
from runner.ledger.events import event, now
from runner.ledger.models import ACTIVE, LatestMetric, Result, Run, Sweep
from runner.ledger.result_doc import showable

LIST_LIMIT_MAX = 1000
R = Run.__table__.c
L = LatestMetric.__table__.c
RES = Result.__table__.c


# ---------------------------------------------------------------- writes


def add_queued_run(
    s: Session,
    cfg,
    *,
    reason: str,
    sweep_id: int | None = None,
    phase: str | None = None,
    priority: int = 0,
    cell: str | None = None,
    axis: str | None = None,
    is_baseline: bool = False,
    launcher: str | None = None,
) -> Run:
    """A queued run for a validated TrainConfig (its plan stored beside it), and its first
    event, in the caller's transaction (runs submitted alone, plan cells, promoted finalists).
    `launcher`: the launcher it asks for (None: the service's own)."""
    t = now()
    run = Run(
        name=cfg.name,
        spec_json=cfg.model_dump_json(),
        spec_hash=cfg.spec_hash(),
        plan_json=json.dumps(cfg.plan().to_dict()),
        sweep_id=sweep_id,
        phase=phase,
        seed=cfg.runtime.seed,
        priority=priority,
        max_tokens=cfg.max_tokens,
        created_at=t,
        updated_at=t,
        cell=cell,
        axis=axis,
        is_baseline=is_baseline,
        launcher_wanted=launcher,
    )
    s.add(run)
    s.flush()
    s.add(
        event(
            kind="state", reason=reason, run_id=run.id, sweep_id=sweep_id, t=t, to_status="queued"
        )
    )
    return run


def create_run(
    engine: Engine,
    *,
    cfg,
    priority: int = 0,
    sweep_id: int | None = None,
    phase: str | None = None,
    launcher: str | None = None,
) -> Run:
    with write_session(engine) as s:
        if sweep_id is not None and s.get(Sweep, sweep_id) is None:
            raise NotFound(f"sweep {sweep_id} does not exist; leave sweep_id out or create it")
        run = add_queued_run(
            s,
            cfg,
            reason="submitted" + (f" for the {launcher} launcher" if launcher else ""),
            sweep_id=sweep_id,
            phase=phase,
            priority=priority,
            launcher=launcher,
        )
        s.commit()
        s.refresh(run)
        return run


def set_run_fields(engine: Engine, *, run_id: int, **fields: Any) -> None:
    """Bookkeeping fields of a run (never its status: lifecycle changes that)."""
    if "status" in fields:
        raise ValueError("a run's status changes through runner.ledger.lifecycle only")
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        for k, v in fields.items():
            setattr(run, k, v)
        run.updated_at = now()
        s.add(run)


# ---------------------------------------------------------------- one run


def get_run(engine: Engine, *, run_id: int) -> Run:
    with Session(engine) as s:
        run = s.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


@dataclass(frozen=True)
class RunRef:
    """What the trainer-facing hot path needs of a run (no ORM object: it costs more than the
    write itself)."""

    id: int
    status: str
    token_hash: str | None
    sweep_id: int | None
    phase: str | None
    is_baseline: bool
    seed: int
    stop_reason: str | None
    max_tokens: int


# a prepared statement: this lookup is on every trainer post, and building a select per call
# costs more than running it
RUN_REF = text(
    "SELECT id, status, token_hash, sweep_id, phase, is_baseline, seed, stop_reason, max_tokens "
    "FROM runs WHERE id = :id"
)


def run_ref(engine: Engine, *, run_id: int) -> RunRef:
    with engine.connect() as conn:
        row = conn.execute(RUN_REF, {"id": run_id}).first()
    if row is None:
        raise NotFound(f"run {run_id} does not exist")
    return RunRef(*row)


def run_detail(engine: Engine, *, run_id: int) -> dict | None:
    """A run's columns with its config, plan, result and latest values (None: no such run)."""
    keep = [c for c in R if c.name != "token_hash"]
    with engine.connect() as conn:
        row = conn.execute(
            select(*keep, RES.metrics_json)
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
    d["result"] = showable(json.loads(mj)) if mj else None
    d["latest"] = latest
    d["is_baseline"] = bool(d["is_baseline"])
    return d


def version(engine: Engine, *, run_id: int) -> tuple:
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


def baseline_runs(
    engine: Engine, *, sweep_id: int | None, phase: str | None, seed: int | None = None
) -> list[int]:
    """The runs a sweep phase's cells are compared with: its baselines, one per seed (the
    given seed first, then by seed)."""
    if sweep_id is None:
        return []
    order = [R.seed, R.id]
    if seed is not None:
        order.insert(0, case((R.seed == seed, 0), else_=1))
    with engine.connect() as conn:
        rows = conn.execute(
            select(R.id)
            .where(R.sweep_id == sweep_id, R.phase.is_not_distinct_from(phase), R.is_baseline)
            .order_by(*order)
        ).all()
    return [r[0] for r in rows]


def judged_runs(engine: Engine, *, sweep_id: int, phase: str | None) -> list[RunRef]:
    """The runs of a sweep phase the kill rule may still judge: active, not a baseline, not
    already told to stop."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(*(R[c] for c in RunRef.__dataclass_fields__))
            .where(
                R.sweep_id == sweep_id,
                R.phase.is_not_distinct_from(phase),
                R.is_baseline.is_(False),
                R.status.in_(ACTIVE),
                R.stop_reason.is_(None),
            )
            .order_by(R.id)
        ).all()
    return [RunRef(*r) for r in rows]


# ---------------------------------------------------------------- lists


PUBLIC_RUN = tuple(c.name for c in R if c.name not in ("spec_json", "plan_json", "token_hash"))


def run_list(
    engine: Engine,
    *,
    status: str | None = None,
    sweep_id: int | None = None,
    phase: str | None = None,
    since: float | None = None,
    limit: int = 100,
    offset: int = 0,
    before_id: int | None = None,
    after_id: int | None = None,
    count: bool = True,
) -> tuple[list[dict], int | None]:
    """A page of runs as plain dicts (their public columns and `latest` metrics), newest
    first: two queries (the page, then its runs' latest values) and no ORM objects, so 1,000
    rows cost little. Keyset paging: `before_id` (the page after one that ended at that id) or
    `after_id` (ids above it, oldest first: every run exactly once while runs are added); both
    together: the ids between them, oldest first.
    `since`: only runs changed after that time (state, progress or a heartbeat). `count`: also
    how many match the filters, `since` aside (None when not asked)."""
    conds = []
    if status:
        conds.append(R.status == status)
    if sweep_id is not None:
        conds.append(R.sweep_id == sweep_id)
    if phase:
        conds.append(R.phase == phase)
    page = select(R.id).where(*conds)
    if since is not None:
        page = page.where(or_(R.updated_at > since, R.last_heartbeat > since))
    if before_id is not None:
        page = page.where(R.id < before_id)
    if after_id is not None:
        page = page.where(R.id > after_id).order_by(R.id)
    else:
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


def changed_runs(engine: Engine, *, since: float) -> list[int]:
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


def status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(R.status, func.count()).group_by(R.status)).all()
    return {s: n for s, n in rows}


def latest_for(engine: Engine, *, run_ids: list[int]) -> dict[int, dict[str, float]]:
    if not run_ids:
        return {}
    out: dict[int, dict[str, float]] = {i: {} for i in run_ids}
    with engine.connect() as conn:
        rows = conn.execute(select(L.run_id, L.name, L.value).where(L.run_id.in_(run_ids))).all()
    for rid, name, value in rows:
        out[rid][name] = value
    return out


# ---------------------------------------------------------------- for the scheduler


def active_runs(engine: Engine) -> list[Run]:
    with Session(engine) as s:
        return list(s.exec(orm_select(Run).where(col(Run.status).in_(ACTIVE))).all())


def runs_by_backend(engine: Engine, *, backend_ids: list[str]) -> list[Run]:
    if not backend_ids:
        return []
    with Session(engine) as s:
        return list(s.exec(orm_select(Run).where(col(Run.backend_id).in_(backend_ids))).all())


def active_count(engine: Engine, *, launcher: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(R.status.in_(ACTIVE), R.launcher == launcher)
            ).scalar()
        )


# What a launcher of :kinds (or, with :any_kind, of any kind) may claim at :now: queued, out of
# any launch error's back-off (`not_before`), in no paused sweep. The claim and the warm pool's
# refill read the same condition.
CLAIMABLE = (
    "status = 'queued' AND (launcher_wanted IN :kinds OR (:any_kind AND launcher_wanted IS NULL)) "
    "AND (not_before IS NULL OR not_before <= :now) "
    "AND (sweep_id IS NULL OR sweep_id NOT IN (SELECT id FROM sweeps WHERE status = 'paused'))"
)
_WAITING = text(f"SELECT updated_at FROM runs WHERE {CLAIMABLE} ORDER BY updated_at").bindparams(
    bindparam("kinds", expanding=True)
)


def waiting_for(engine: Engine, *, kind: str, t: float) -> list[float]:
    """When each run that a launcher of `kind` would claim at `t` was last queued, oldest
    first: what the warm pool reads to refill."""
    with engine.connect() as conn:
        rows = conn.execute(_WAITING, {"kinds": [kind], "any_kind": False, "now": t}).all()
    return [float(x) for (x,) in rows]


def cancelled_with_jobs(engine: Engine, *, launcher: str, since: float) -> list[Run]:
    """Runs of `launcher` cancelled since `since` that had a job (to cancel it there too)."""
    with Session(engine) as s:
        return list(
            s.exec(
                orm_select(Run).where(
                    Run.status == "cancelled",
                    Run.launcher == launcher,
                    col(Run.backend_id).is_not(None),
                    col(Run.finished_at) >= since,
                )
            ).all()
        )
