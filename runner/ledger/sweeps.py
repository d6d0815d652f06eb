"""Sweeps: a plan's rows (its runs queued with it, its infeasible cells as events), its phase as
promotion moves it on, and the reads of one sweep or of all. A promotion's runs, its phase and
its decision are one transaction."""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from sqlmodel import select as orm_select

from runner.ledger.db import write_session
from runner.ledger.errors import Conflict, NotFound
from runner.ledger.events import event, now
from runner.ledger.models import FINISHED, LatestMetric, Run, Sweep
from runner.ledger.runs import add_queued_run

R = Run.__table__.c
S = Sweep.__table__.c
L = LatestMetric.__table__.c


def _count_if(cond):
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


# ---------------------------------------------------------------- writes


def create_sweep(
    engine: Engine,
    *,
    name: str,
    kind: str,
    spec_json: str,
    budget_usd: float | None,
    reports_root: str,
    runs: list[dict],
    infeasible: list[dict],
) -> Sweep:
    """The sweep, its queued runs and its infeasible cells, in one transaction. `runs`: dicts of
    add_queued_run's arguments (cfg, cell, axis, phase, is_baseline, priority, reason)."""
    t = now()
    with write_session(engine) as s:
        sweep = Sweep(
            name=name,
            kind=kind,
            spec_json=spec_json,
            status="active",
            phase="ranking",
            budget_usd=budget_usd,
            created_at=t,
            updated_at=t,
        )
        s.add(sweep)
        s.flush()
        sweep.report_dir = f"{reports_root.rstrip('/')}/sweep-{sweep.id:04d}"
        why = f"submitted {kind} {name!r}: {len(runs)} runs, {len(infeasible)} infeasible cells"
        s.add(event(kind="sweep", reason=why, sweep_id=sweep.id, t=t))
        for r in runs:
            add_queued_run(
                s,
                r["cfg"],
                reason=f"cell {r['cell']} of sweep {sweep.id}",
                sweep_id=sweep.id,
                **{k: v for k, v in r.items() if k != "cfg"},
            )
        for i in infeasible:
            s.add(event(kind="infeasible", reason=i["reason"], sweep_id=sweep.id, t=t, data=i))
        s.commit()
        s.refresh(sweep)
        return sweep


def add_finalists(
    engine: Engine, *, sweep_id: int, runs: list[dict], phase: str, decision: dict, reason: str
) -> list[int]:
    """Queue a promotion's runs (skipping cell/seed pairs that exist: promotion is idempotent),
    move the sweep on, and record the decision, in one transaction; the new run ids."""
    created: list[int] = []
    t = now()
    with write_session(engine) as s:
        sw = s.get(Sweep, sweep_id, with_for_update=True)  # one promotion at a time
        for r in runs:
            exists = s.exec(
                orm_select(Run.id).where(
                    Run.sweep_id == sweep_id,
                    Run.phase == "finalists",
                    Run.cell == r["cell"],
                    Run.seed == r["cfg"].runtime.seed,
                )
            ).first()
            if exists:
                continue
            run = add_queued_run(
                s,
                r["cfg"],
                reason=f"finalist {r['cell']}, seed {r['cfg'].runtime.seed}",
                sweep_id=sweep_id,
                phase="finalists",
                cell=r["cell"],
                axis="finalist",
                is_baseline=r["is_baseline"],
                priority=5,
                launcher=r.get("launcher"),
            )
            created.append(run.id)
        sw.phase = phase
        sw.status = "done" if phase == "done" else "paused" if sw.status == "paused" else "active"
        sw.updated_at = t
        s.add(sw)
        data = {**decision, "created_runs": created}
        s.add(event(kind="promotion", reason=reason, sweep_id=sweep_id, t=t, data=data))
    return created


def close_sweep(engine: Engine, *, sweep_id: int, reason: str) -> None:
    with write_session(engine) as s:
        sw = s.get(Sweep, sweep_id, with_for_update=True)
        sw.phase, sw.status, sw.updated_at = "done", "done", now()
        s.add(sw)
        s.add(event(kind="sweep", reason=reason, sweep_id=sweep_id))


def pause_sweep(engine: Engine, *, sweep_id: int, reason: str) -> bool:
    """Hold an active sweep's queued runs (a launch error that will not pass by itself: a
    missing credential, no cloud enabled); False when it was not active."""
    with write_session(engine) as s:
        sw = s.get(Sweep, sweep_id, with_for_update=True)
        if sw is None or sw.status != "active":
            return False
        sw.status, sw.paused_reason, sw.updated_at = "paused", reason, now()
        s.add(sw)
        s.add(event(kind="sweep", reason=f"paused: {reason}", sweep_id=sweep_id))
        return True


def resume_sweep(engine: Engine, *, sweep_id: int, who: str = "a user") -> Sweep:
    """A paused sweep's runs may launch again (the cause was fixed). NotFound, or Conflict
    when it is not paused."""
    with write_session(engine) as s:
        sw = s.get(Sweep, sweep_id, with_for_update=True)
        if sw is None:
            raise NotFound(f"sweep {sweep_id} does not exist")
        if sw.status != "paused":
            raise Conflict(f"sweep {sweep_id} is {sw.status}; only a paused sweep resumes")
        was = sw.paused_reason
        sw.status, sw.paused_reason, sw.updated_at = "active", None, now()
        s.add(sw)
        s.add(event(kind="sweep", reason=f"resumed by {who} (was paused: {was})", sweep_id=sw.id))
        s.commit()
        s.refresh(sw)
        return sw


# ---------------------------------------------------------------- reads


def get_sweep(engine: Engine, *, sweep_id: int) -> Sweep:
    with Session(engine) as s:
        sw = s.get(Sweep, sweep_id)
    if sw is None:
        raise NotFound(f"sweep {sweep_id} does not exist")
    return sw


def list_sweeps(engine: Engine, *, status: str | None = None) -> list[Sweep]:
    q = orm_select(Sweep)
    if status:
        q = q.where(Sweep.status == status)
    with Session(engine) as s:
        return list(s.exec(q.order_by(col(Sweep.id).desc())).all())


def sweep_runs(engine: Engine, *, sweep_id: int, phases: tuple[str, ...] = ()) -> list[Run]:
    q = orm_select(Run).where(Run.sweep_id == sweep_id)
    if phases:
        q = q.where(col(Run.phase).in_(phases))
    with Session(engine) as s:
        return list(s.exec(q.order_by(col(Run.id))).all())


def run_counts(engine: Engine, *, sweep_ids: list[int]) -> dict[int, dict[str, int]]:
    """{sweep id: {status: runs}}."""
    out: dict[int, dict[str, int]] = {i: {} for i in sweep_ids}
    if not sweep_ids:
        return out
    with engine.connect() as conn:
        rows = conn.execute(
            select(R.sweep_id, R.status, func.count())
            .where(R.sweep_id.in_(sweep_ids))
            .group_by(R.sweep_id, R.status)
        ).all()
    for sweep_id, status, n in rows:
        out[sweep_id][status] = n
    return out


def sweeps_overview(engine: Engine) -> list[dict]:
    """Every sweep with its run counts, spend and GPU-hours, newest first."""
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
        "id", "name", "kind", "phase", "status", "budget_usd", "report_dir", "runs", "finished",
        "running", "killed", "cost_usd", "gpu_hours",
    )  # fmt: skip
    with engine.connect() as conn:
        return [dict(zip(keys, r, strict=True)) for r in conn.execute(q).all()]


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


def mean_latest(engine: Engine, *, sweep_id: int, name: str) -> float | None:
    """The mean of one metric's latest value over a sweep's runs (e.g. measured tokens/s)."""
    with engine.connect() as conn:
        v = conn.execute(
            select(func.avg(L.value))
            .select_from(LatestMetric.__table__.join(Run.__table__, R.id == L.run_id))
            .where(R.sweep_id == sweep_id, L.name == name)
        ).scalar()
    return float(v) if v else None
