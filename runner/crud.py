"""Plain functions over the ledger; routes stay thin over these. Keyword-only arguments.

Every state change goes through `transition`, which writes the event row in the same
transaction, so the history of a run is never out of step with its status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from runner.db import write_session
from runner.models import ACTIVE, FINISHED, Event, LatestMetric, Result, Run

LIST_LIMIT_MAX = 1000


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    pass


def now() -> float:
    return time.time()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_hash: str | None) -> bool:
    return bool(token_hash) and hmac.compare_digest(hash_token(token), token_hash)


# ---------------------------------------------------------------- runs


def validate_spec(config: dict[str, Any]):
    """A TrainConfig, or trainer.config.ConfigError naming the field / the planner's refusal."""
    from trainer.config import validate

    return validate(config)


def create_run(
    engine: Engine,
    *,
    config: dict[str, Any],
    name: str | None = None,
    priority: int = 0,
    sweep_id: int | None = None,
    phase: str | None = None,
) -> Run:
    cfg = validate_spec(config if name is None else {**config, "name": name})
    with write_session(engine) as s:
        run = add_queued_run(
            s, cfg, reason="submitted", sweep_id=sweep_id, phase=phase, priority=priority
        )
        s.commit()
        s.refresh(run)
        return run


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
) -> Run:
    """A queued run for a validated TrainConfig, and its first event, in the caller's
    transaction (runs submitted alone, plan cells, promoted finalists)."""
    t = now()
    run = Run(
        name=cfg.name,
        spec_json=cfg.model_dump_json(),
        spec_hash=cfg.spec_hash(),
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
    )
    s.add(run)
    s.flush()
    s.add(
        Event(
            run_id=run.id,
            sweep_id=sweep_id,
            time=t,
            kind="state",
            to_status="queued",
            reason=reason,
        )
    )
    return run


def get_run(engine: Engine, *, run_id: int) -> Run:
    with Session(engine) as s:
        run = s.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        return run


def latest_for(engine: Engine, *, run_ids: list[int]) -> dict[int, dict[str, float]]:
    if not run_ids:
        return {}
    out: dict[int, dict[str, float]] = {i: {} for i in run_ids}
    with Session(engine) as s:
        rows = s.exec(select(LatestMetric).where(col(LatestMetric.run_id).in_(run_ids))).all()
    for r in rows:
        out[r.run_id][r.name] = r.value
    return out


def list_runs(
    engine: Engine,
    *,
    status: str | None = None,
    sweep_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Run], int]:
    q = select(Run)
    count = select(func.count()).select_from(Run)
    if status:
        q = q.where(Run.status == status)
        count = count.where(Run.status == status)
    if sweep_id is not None:
        q = q.where(Run.sweep_id == sweep_id)
        count = count.where(Run.sweep_id == sweep_id)
    with Session(engine) as s:
        rows = s.exec(q.order_by(col(Run.id).desc()).offset(offset).limit(limit)).all()
        total = s.exec(count).one()
    return list(rows), int(total)


def transition(s: Session, run: Run, to: str, reason: str, **fields: Any) -> None:
    """Change a run's status and record why, in the caller's transaction."""
    t = now()
    s.add(
        Event(
            run_id=run.id,
            sweep_id=run.sweep_id,
            time=t,
            kind="state",
            from_status=run.status,
            to_status=to,
            reason=reason,
            data_json=json.dumps(fields.pop("event_data")) if "event_data" in fields else None,
        )
    )
    if run.status in ACTIVE and to not in ACTIVE and run.started_at:
        # an attempt ends (done, killed, lost, preempted...): its provisioned time is charged
        from runner.cost import charge

        hours, usd = charge(t - run.started_at)
        run.gpu_hours = (run.gpu_hours or 0.0) + hours
        run.cost_usd = (run.cost_usd or 0.0) + usd
    run.status = to
    run.updated_at = t
    for k, v in fields.items():
        setattr(run, k, v)
    if to in FINISHED:
        run.finished_at = t
        run.exit_reason = reason
    s.add(run)


def cancel_run(engine: Engine, *, run_id: int) -> Run:
    with write_session(engine) as s:
        run = s.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        if run.status in FINISHED:
            raise Conflict(
                f"run {run_id} is {run.status}; cancel applies to queued, launching or running runs"
            )
        # An active run is stopped by the scheduler (SIGTERM, then SIGKILL after the grace).
        transition(s, run, "cancelled", "cancelled by the user")
        s.commit()
        s.refresh(run)
        return run


def events(
    engine: Engine, *, run_id: int | None = None, sweep_id: int | None = None, limit: int = 1000
) -> list[Event]:
    q = select(Event)
    if run_id is not None:
        q = q.where(Event.run_id == run_id)
    if sweep_id is not None:
        q = q.where(Event.sweep_id == sweep_id)
    with Session(engine) as s:
        return list(s.exec(q.order_by(col(Event.id)).limit(limit)).all())


def add_event(
    engine: Engine,
    *,
    kind: str,
    reason: str,
    run_id: int | None = None,
    sweep_id: int | None = None,
    data: dict | None = None,
) -> None:
    with write_session(engine) as s:
        s.add(
            Event(
                run_id=run_id,
                sweep_id=sweep_id,
                time=now(),
                kind=kind,
                reason=reason,
                data_json=json.dumps(data) if data is not None else None,
            )
        )


# ---------------------------------------------------------------- trainer-facing


@dataclass(frozen=True)
class RunRef:
    """What the trainer-facing hot path needs of a run (no ORM object: it costs more than the
    write itself)."""

    id: int
    status: str
    token_hash: str | None
    sweep_id: int | None
    phase: str | None


def run_ref(engine: Engine, *, run_id: int) -> RunRef:
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT id, status, token_hash, sweep_id, phase FROM runs WHERE id = ?", (run_id,)
        ).first()
    if row is None:
        raise NotFound(f"run {run_id} does not exist")
    return RunRef(*row)


def check_run_token(engine: Engine, *, run_id: int, token: str, admin_token: str) -> RunRef:
    """The run, if `token` is its own or the admin's; NotFound / PermissionError otherwise."""
    run = run_ref(engine, run_id=run_id)
    if hmac.compare_digest(token, admin_token) or token_matches(token, run.token_hash):
        return run
    raise PermissionError(f"this token may not post to run {run_id}")


def ingest_metrics(
    engine: Engine, *, run: Run | RunRef, points: list[tuple[str, int, int, float]], kill_rule=None
) -> tuple[int, int, str, str | None]:
    """Store points idempotently (unique run/name/step); return (accepted, duplicates, action,
    reason). Raw statements, group-committed (runner/ingest.py), no ORM."""
    from runner.ingest import writer_for

    rows = [(run.id, n, st, tk, v) for n, st, tk, v in points]
    inserted = writer_for(engine).submit(run.id, rows) if rows else 0
    return (
        len(rows),
        len(rows) - inserted,
        *decide(engine, run=run, points=points, kill_rule=kill_rule),
    )


def decide(engine: Engine, *, run: Run | RunRef, points, kill_rule=None) -> tuple[str, str | None]:
    """The answer to a trainer's post: continue, or stop (cancelled, or the kill rule)."""
    if run.status in ("cancelled", "killed"):
        return "stop", f"run {run.id} is {run.status}"
    if kill_rule is not None and points:
        verdict = kill_rule(engine, run, points)
        if verdict:
            return "stop", verdict
    return "continue", None


def heartbeat(
    engine: Engine,
    *,
    run: Run | RunRef,
    step: int | None,
    tokens: int | None,
    attempt: int | None = None,
) -> tuple[str, str | None]:
    with write_session(engine) as s:
        r = s.get(Run, run.id)
        r.last_heartbeat = now()
        if tokens is not None:
            r.tokens_seen = max(r.tokens_seen, tokens)
        if attempt is not None and attempt > r.attempt:
            # resumed outside the runner (a SkyPilot spot recovery): the ledger counts it too
            s.add(
                Event(
                    run_id=r.id,
                    sweep_id=r.sweep_id,
                    time=now(),
                    kind="attempt",
                    reason=f"the trainer resumed as attempt {attempt} (recovered outside "
                    "the runner, e.g. a spot relaunch)",
                    data_json=json.dumps({"attempt": attempt, "step": step, "tokens": tokens}),
                )
            )
            r.attempt = attempt
        if r.status == "launching":
            transition(s, r, "running", "first heartbeat")
        s.add(r)
        status = r.status
    if status in ("cancelled", "killed"):
        return "stop", f"run {run.id} is {status}"
    return "continue", None


def post_result(engine: Engine, *, run: Run | RunRef, metrics: dict[str, Any]) -> Run:
    """Store the final metrics.json; it also settles the run's final status."""
    status = (metrics.get("run") or {}).get("status")
    reason = (metrics.get("run") or {}).get("exit_reason") or "result posted"
    with write_session(engine) as s:
        r = s.get(Run, run.id)
        existing = s.get(Result, run.id)
        doc = json.dumps(metrics, allow_nan=False)
        if existing is None:
            s.add(Result(run_id=run.id, metrics_json=doc, created_at=now()))
        else:
            existing.metrics_json = doc
            s.add(existing)
        tokens = ((metrics.get("training") or {}).get("tokens_seen")) or r.tokens_seen
        r.tokens_seen = max(r.tokens_seen, int(tokens))
        if status in ("succeeded", "killed", "failed") and r.status not in FINISHED:
            transition(s, r, status, reason)
        s.add(r)
        s.commit()
        s.refresh(r)
        return r


def get_result(engine: Engine, *, run_id: int) -> dict | None:
    with Session(engine) as s:
        res = s.get(Result, run_id)
        return json.loads(res.metrics_json) if res else None


def metric_series(
    engine: Engine, *, run_id: int, name: str, max_points: int = 500
) -> tuple[list[dict[str, int | float]], int]:
    """Points of one metric by step, evenly downsampled to at most max_points (last kept)."""
    get_run(engine, run_id=run_id)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT step, tokens, value FROM metric_points WHERE run_id = :r "
                "AND name = :n ORDER BY step"
            ),
            {"r": run_id, "n": name},
        ).all()
    total = len(rows)
    if total > max_points:
        stride = (total - 1) / (max_points - 1) if max_points > 1 else total
        idx = sorted({min(total - 1, round(i * stride)) for i in range(max_points)})
        rows = [rows[i] for i in idx]
    return [{"step": r[0], "tokens": r[1], "value": r[2]} for r in rows], total


# ---------------------------------------------------------------- scheduling


def claim_queued(engine: Engine, *, limit: int, launcher: str) -> list[tuple[Run, str]]:
    """Atomically move up to `limit` queued runs (priority, then age) to launching, each with a
    fresh run token (only its hash is stored)."""
    if limit <= 0:
        return []
    out = []
    with write_session(engine) as s:
        runs = s.exec(
            select(Run)
            .where(Run.status == "queued")
            .order_by(col(Run.priority).desc(), col(Run.created_at), col(Run.id))
            .limit(limit)
        ).all()
        for run in runs:
            refusal = budget_refusal(s, run)
            if refusal:
                transition(s, run, "cancelled", refusal)
                continue
            token = secrets.token_urlsafe(24)
            transition(
                s,
                run,
                "launching",
                f"claimed by the {launcher} launcher",
                launcher=launcher,
                attempt=run.attempt + 1,
                token_hash=hash_token(token),
                started_at=now(),
                last_heartbeat=None,  # the start-up grace applies until the first heartbeat
            )
            out.append((run, token))
        s.commit()
        for run, _ in out:
            s.refresh(run)
    return out


def budget_refusal(s: Session, run: Run) -> str | None:
    """Why launching `run` would cross its sweep's budget cap, or None. Forecast: what the sweep
    has spent, plus the tokens still to train in its active runs and in this one, at the
    sweep's measured tokens per second and the service's price."""
    from runner import cost
    from runner.models import Sweep

    if run.sweep_id is None:
        return None
    sweep = s.get(Sweep, run.sweep_id)
    if sweep is None or not sweep.budget_usd:
        return None
    rows = s.exec(select(Run).where(Run.sweep_id == run.sweep_id)).all()
    spent = sum(r.cost_usd or 0.0 for r in rows)
    pending = sum(max(0, r.max_tokens - r.tokens_seen) for r in rows if r.status in ACTIVE)
    pending += max(0, run.max_tokens - run.tokens_seen)
    engine = s.get_bind()
    p = cost.PRICING
    ahead = cost.forecast_usd(
        engine, run.sweep_id, pending, p["accelerator"], p["spot"], p["prices"]
    )
    if spent + ahead > sweep.budget_usd:
        return (
            f"budget: sweep {run.sweep_id} has spent ${spent:.2f}; with this run and the "
            f"ones running it would reach ${spent + ahead:.2f}, over its cap "
            f"${sweep.budget_usd:.2f}. Raise budget_usd or shorten the runs."
        )
    return None


def active_runs(engine: Engine) -> list[Run]:
    with Session(engine) as s:
        return list(s.exec(select(Run).where(col(Run.status).in_(ACTIVE))).all())


def set_run_fields(engine: Engine, *, run_id: int, **fields: Any) -> None:
    with write_session(engine) as s:
        run = s.get(Run, run_id)
        for k, v in fields.items():
            setattr(run, k, v)
        run.updated_at = now()
        s.add(run)


def move(
    engine: Engine,
    *,
    run_id: int,
    to: str,
    reason: str,
    only_from: tuple[str, ...] = (),
    **fields: Any,
) -> Run | None:
    """Transition if the run is still in one of `only_from` (no-op otherwise); returns it."""
    with write_session(engine) as s:
        run = s.get(Run, run_id)
        if run is None or (only_from and run.status not in only_from):
            return None
        transition(s, run, to, reason, **fields)
        s.commit()
        s.refresh(run)
        return run


def requeue_or_fail(
    engine: Engine, *, run_id: int, reason: str, max_attempts: int, lost: bool = False
) -> Run | None:
    """After a lost lease or a crash: queued again (attempt + 1 at the next claim) until the
    retry limit, then failed. The next attempt resumes from the run's checkpoint."""
    with write_session(engine) as s:
        run = s.get(Run, run_id)
        if run is None or run.status not in ACTIVE:
            return None
        if lost:
            transition(s, run, "lost", reason)
        if run.attempt >= max_attempts:
            transition(
                s, run, "failed", f"{reason}; gave up after {run.attempt} attempts", token_hash=None
            )
        else:
            transition(
                s,
                run,
                "queued",
                f"{reason}; requeued (attempt {run.attempt + 1} of {max_attempts} next)",
                token_hash=None,
            )
        s.commit()
        s.refresh(run)
        return run
