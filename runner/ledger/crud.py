"""Plain functions over the ledger's state; routes, the scheduler and the study call these.
Keyword-only arguments. Reads for pages and reports live beside them in `queries.py`.

A run's status changes only through `set_status` / `requeue_or_fail`, which write the event row
in the same transaction and charge the attempt that ended, so the history of a run is never out
of step with its status or its cost. A decision (the kill rule's verdict) is recorded as an event
and a stop request; the status follows when the trainer's exit arrives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from runner.ledger import attempts, series
from runner.ledger.attempts import Placement, Prices, Usage
from runner.ledger.db import lock_run, write_session
from runner.ledger.models import (
    ACTIVE,
    FINISHED,
    Attempt,
    Event,
    LatestMetric,
    Result,
    Run,
    Sweep,
)

LIST_LIMIT_MAX = 1000


class NotFound(LookupError):
    """-> 404 (an app-level handler)."""


class Conflict(RuntimeError):
    """-> 409: the request is valid but the ledger's state forbids it now."""


def now() -> float:
    return time.time()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two tokens as bytes (any characters, never an exception)."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def token_matches(token: str, token_hash: str | None) -> bool:
    return bool(token_hash) and hmac.compare_digest(hash_token(token), token_hash)


# ---------------------------------------------------------------- runs


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


def active_runs(engine: Engine) -> list[Run]:
    with Session(engine) as s:
        return list(s.exec(select(Run).where(col(Run.status).in_(ACTIVE))).all())


def runs_by_backend(engine: Engine, *, backend_ids: list[str]) -> list[Run]:
    if not backend_ids:
        return []
    with Session(engine) as s:
        return list(s.exec(select(Run).where(col(Run.backend_id).in_(backend_ids))).all())


def set_run_fields(engine: Engine, *, run_id: int, **fields: Any) -> None:
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        for k, v in fields.items():
            setattr(run, k, v)
        run.updated_at = now()
        s.add(run)


# ---------------------------------------------------------------- status changes


def _transition(
    s: Session,
    run: Run,
    to: str,
    reason: str,
    pricing: Prices | None,
    usage: Usage | None = None,
    outcome: str | None = None,
    **fields: Any,
) -> None:
    """Change a run's status and record why, in the caller's transaction. Leaving an active
    state ends the current attempt (its outcome: `outcome`, else the new status), which is
    charged then (runner.ledger.attempts)."""
    t = now()
    data = fields.pop("event_data", None)
    s.add(
        Event(
            run_id=run.id,
            sweep_id=run.sweep_id,
            time=t,
            kind="state",
            from_status=run.status,
            to_status=to,
            reason=reason,
            data_json=json.dumps(data) if data is not None else None,
        )
    )
    if run.status in ACTIVE and to not in ACTIVE:
        attempts.end(s, run, t=t, outcome=outcome or to, prices=pricing, usage=usage)
        run.running_since = None
    run.status = to
    run.updated_at = t
    for k, v in fields.items():
        setattr(run, k, v)
    if to in FINISHED:
        run.finished_at = t
        run.exit_reason = reason
    s.add(run)


def set_status(
    engine: Engine,
    *,
    run_id: int,
    to: str,
    reason: str,
    pricing: Prices | None,
    only_from: tuple[str, ...] = (),
    usage: Usage | None = None,
    **fields: Any,
) -> Run | None:
    """Move a run to `to` if it is still in one of `only_from` (any state when empty); None
    when it was not (someone else settled it first). `usage`: what the ending attempt used,
    when its launcher measured it (a cloud's job duration and provisioned GPU)."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None or (only_from and run.status not in only_from):
            return None
        _transition(s, run, to, reason, pricing, usage, **fields)
        s.commit()
        s.refresh(run)
        return run


def cancel_run(engine: Engine, *, run_id: int, pricing: Prices | None) -> Run:
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        if run.status in FINISHED:
            raise Conflict(
                f"run {run_id} is {run.status}; cancel applies to queued, launching or running runs"
            )
        # An active run is stopped by the scheduler (SIGTERM, then SIGKILL after the grace).
        _transition(s, run, "cancelled", "cancelled by the user", pricing)
        s.commit()
        s.refresh(run)
        return run


REQUEUABLE = ("failed", "lost", "cancelled")


def requeue_run(engine: Engine, *, run_id: int, pricing: Prices | None) -> Run:
    """A failed, lost or cancelled run back in the queue, by a user's request (recorded as an
    event). Not a run of a finished sweep: its report is already written."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        if run.status not in REQUEUABLE:
            raise Conflict(
                f"run {run_id} is {run.status}; requeue applies to {', '.join(REQUEUABLE)} runs"
            )
        if run.sweep_id is not None:
            sweep = s.get(Sweep, run.sweep_id)
            if sweep is not None and sweep.status != "active":
                raise Conflict(
                    f"run {run_id} belongs to sweep {run.sweep_id}, which is {sweep.status}; "
                    "submit a new run instead"
                )
        _transition(s, run, "queued", "requeued by the user", pricing, token_hash=None)
        run.finished_at = None
        run.exit_reason = None
        run.stop_reason = None
        s.commit()
        s.refresh(run)
        return run


# A lease is lost only if nothing was heard since it was judged lost: a heartbeat that lands
# between the scheduler's read and its requeue keeps the run (and the row is locked from here on).
LEASE_LAPSED = text(
    "UPDATE runs SET updated_at = :now WHERE id = :id AND attempt = :attempt "
    "AND status IN ('launching', 'running') AND last_heartbeat IS NOT DISTINCT FROM :heard "
    "RETURNING id"
)


def requeue_or_fail(
    engine: Engine,
    *,
    run_id: int,
    reason: str,
    max_attempts: int,
    pricing: Prices | None,
    lost: bool = False,
    usage: Usage | None = None,
    outcome: str = "crashed",
    silent_since: tuple[int, float | None] | None = None,
) -> Run | None:
    """After a lost lease, a crash or a preemption (`outcome` of the attempt that ends): queued
    again (attempt + 1 at the next claim) until the retry limit, then failed. The next attempt
    resumes from the run's checkpoint. `silent_since` (attempt, last heartbeat as judged): a
    lost lease is acted on only if that attempt is still current and has not been heard from
    since, decided by one conditional UPDATE (None when it was: nothing changes)."""
    with write_session(engine) as s:
        if silent_since is not None:
            attempt, heard = silent_since
            still = s.connection().execute(
                LEASE_LAPSED, {"id": run_id, "attempt": attempt, "heard": heard, "now": now()}
            )
            if still.first() is None:
                return None
        run = lock_run(s, run_id)
        if run is None or run.status not in ACTIVE:
            return None
        if lost:
            _transition(s, run, "lost", reason, pricing, usage)
        if run.attempt >= max_attempts:
            why = f"{reason}; gave up after {run.attempt} attempts"
            _transition(s, run, "failed", why, pricing, usage, outcome=outcome)
        else:
            why = f"{reason}; requeued (attempt {run.attempt + 1} of {max_attempts} next)"
            _transition(s, run, "queued", why, pricing, usage, outcome=outcome, token_hash=None)
        s.commit()
        s.refresh(run)
        return run


# The next queued run (priority, then age) for a launcher, and the claim itself. The claim is one
# conditional UPDATE (`AND status = 'queued'`): whatever number of processes claim at once, a run
# is handed out once. On SQLite the write transaction took the database's lock at its start; on
# PostgreSQL the pick locks its row and skips rows other claimers hold (SKIP LOCKED), so claimers
# in many processes take different runs instead of queueing behind one.
_NEXT = (
    "SELECT id FROM runs WHERE status = 'queued' AND (launcher_wanted IN :kinds OR "
    "(:any_kind AND launcher_wanted IS NULL)) ORDER BY priority DESC, created_at, id LIMIT 1"
)
NEXT_QUEUED = {
    "sqlite": text(_NEXT).bindparams(bindparam("kinds", expanding=True)),
    "postgresql": text(_NEXT + " FOR UPDATE SKIP LOCKED").bindparams(
        bindparam("kinds", expanding=True)
    ),
}
CLAIM = text(
    "UPDATE runs SET status = 'launching', launcher = :launcher, attempt = attempt + 1, "
    "token_hash = :token_hash, started_at = :now, running_since = NULL, last_heartbeat = NULL, "
    "updated_at = :now WHERE id = :id AND status = 'queued' RETURNING id, sweep_id, attempt"
)


def claim_queued(
    engine: Engine,
    *,
    limit: int,
    launcher: str,
    kinds: tuple[str, ...] = ("local",),
    takes_unassigned: bool = True,
    placement: Placement = Placement(),
    pricing: Prices | None = None,
    refuse=None,
    running: str | None = None,
) -> list[tuple[Run, str]]:
    """Move up to `limit` queued runs (priority, then age) to launching, each with a fresh run
    token (only its hash is stored) and its first attempt row. A launcher takes the runs that
    ask for one of its `kinds`, and those that ask for none when `takes_unassigned`.
    `refuse(run)` may give a reason not to start a run (a budget cap): it is cancelled
    instead, before any attempt begins. A placement without a price raises ValueError first:
    nothing is claimed on a GPU that would be charged $0. `running`: the claimer starts the
    run itself (a worker), so it moves on to running in the same transaction, for that
    reason. The runs come back as they were committed."""
    if pricing is not None:
        pricing.price_for(placement.accelerator, placement.spot)
    claimed: list[tuple[Run, str]] = []
    with write_session(engine) as s:
        conn = s.connection()
        while len(claimed) < limit:
            row = conn.execute(
                NEXT_QUEUED[conn.dialect.name],
                {"kinds": list(kinds) or [""], "any_kind": takes_unassigned},
            ).first()
            if row is None:
                break
            run = s.get(Run, row[0], populate_existing=True)
            why = refuse(run) if refuse is not None else None
            if why:
                _transition(s, run, "cancelled", why, None)
                s.flush()
                continue
            token, t = secrets.token_urlsafe(24), now()
            got = conn.execute(
                CLAIM,
                {"launcher": launcher, "token_hash": hash_token(token), "now": t, "id": run.id},
            ).first()
            if got is None:  # taken meanwhile (never under the write lock; kept as a fence)
                continue
            s.expire(run)
            s.add(
                Event(
                    run_id=run.id,
                    sweep_id=got[1],
                    time=t,
                    kind="state",
                    from_status="queued",
                    to_status="launching",
                    reason=f"claimed by the {launcher} launcher (attempt {got[2]})",
                )
            )
            attempts.begin(
                s, run, attempt=got[2], launcher=launcher, placement=placement, prices=pricing, t=t
            )
            if running:
                _transition(s, run, "running", running, pricing)
            s.flush()
            s.refresh(run)
            claimed.append((run, token))
    return claimed


def observe_attempt(engine: Engine, *, run_id: int, usage: Usage, pricing: Prices | None) -> None:
    """What the current attempt runs on, as its launcher learned it (the GPU a cloud
    provisioned), and whether it is running yet (its start-up grace counts from then)."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None or run.status not in ACTIVE:
            return
        attempts.observe(s, run, usage, pricing)


def record_launch(
    engine: Engine, *, run_id: int, backend_id: str, run_dir: str, device: str | None = None
) -> None:
    """The launcher started the run's job: the run and its current attempt both name it (a
    cloud's recoveries are counted per job), and the GPU it shares with other runs, if any."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None:
            return
        run.backend_id, run.run_dir, run.updated_at = backend_id, run_dir, now()
        row = attempts.current(s, run)
        if row is not None:
            row.backend_id = backend_id
            row.device = device or row.device
            s.add(row)
        s.add(run)


def mark_running(engine: Engine, *, run_id: int, since: float) -> None:
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is not None and run.status in ACTIVE and run.running_since is None:
            run.running_since = since
            s.add(run)


def record_recovery(
    engine: Engine,
    *,
    run_id: int,
    attempt: int,
    reason: str,
    pricing: Prices | None,
    usage: Usage | None = None,
    prior_seconds: float | None = None,
    t: float | None = None,
) -> bool:
    """The run was recovered onto new machines outside the runner (a spot preemption that the
    cloud, or the trainer's own resume, handled): the current attempt ends as preempted and
    attempt number `attempt` begins, with its own start time. Idempotent: an attempt already
    recorded is not recorded again."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None or run.status not in ACTIVE or attempt <= run.attempt:
            return False
        if prior_seconds is not None:
            # the platform's running time before this recovery, less what earlier attempts on
            # the same job already account for, is what the attempt that ends here ran
            earlier = sum(
                a.seconds
                for a in s.exec(
                    select(Attempt).where(
                        Attempt.run_id == run.id,
                        Attempt.backend_id == run.backend_id,
                        Attempt.ended_at.is_not(None),
                    )
                ).all()
            )
            usage = Usage(
                seconds=max(0.0, prior_seconds - earlier),
                accelerator=usage.accelerator if usage else None,
                spot=usage.spot if usage else None,
                resources=usage.resources if usage else None,
            )
        _recover(s, run, attempt, reason, pricing, usage, t=t)
    return True


def recoveries_recorded(engine: Engine, *, run_id: int, backend_id: str | None) -> int:
    """How many recoveries of this job the ledger holds (its attempts on it, less the first)."""
    if backend_id is None:
        return 0
    with Session(engine) as s:
        n = s.exec(
            select(func.count())
            .select_from(Attempt)
            .where(Attempt.run_id == run_id, Attempt.backend_id == backend_id)
        ).one()
    return max(0, int(n) - 1)


def active_count(engine: Engine, *, launcher: str) -> int:
    with Session(engine) as s:
        return int(
            s.exec(
                select(func.count())
                .select_from(Run)
                .where(col(Run.status).in_(ACTIVE), Run.launcher == launcher)
            ).one()
        )


def cancelled_with_jobs(engine: Engine, *, launcher: str, since: float) -> list[Run]:
    """Runs of `launcher` cancelled since `since` that had a job (to cancel it there too)."""
    with Session(engine) as s:
        return list(
            s.exec(
                select(Run).where(
                    Run.status == "cancelled",
                    Run.launcher == launcher,
                    col(Run.backend_id).is_not(None),
                    col(Run.finished_at) >= since,
                )
            ).all()
        )


def _recover(
    s: Session, run: Run, attempt: int, reason: str, pricing, usage=None, t: float | None = None
) -> None:
    t = t if t is not None else now()
    previous = attempts.current(s, run)
    attempts.end(s, run, t=t, outcome="preempted", prices=pricing, usage=usage)
    s.add(
        Event(
            run_id=run.id,
            sweep_id=run.sweep_id,
            time=t,
            kind="attempt",
            reason=reason,
            data_json=json.dumps({"attempt": attempt, "from": run.attempt}),
        )
    )
    placement = (
        Placement(previous.accelerator, previous.spot, previous.gpus)
        if previous is not None
        else Placement()
    )
    run.attempt = attempt
    run.running_since = None
    run.last_heartbeat = None  # the recovered attempt gets its own start-up grace
    attempts.begin(
        s,
        run,
        attempt=attempt,
        launcher=run.launcher or "unknown",
        backend_id=run.backend_id,
        placement=placement,
        prices=pricing,
        t=t,
    )
    s.add(run)


def running_cost(engine: Engine, *, run_id: int, t: float) -> float:
    with Session(engine) as s:
        run = s.get(Run, run_id)
        return attempts.running_cost(s, run, t) if run is not None else 0.0


# ---------------------------------------------------------------- events


def events(
    engine: Engine,
    *,
    run_id: int | None = None,
    sweep_id: int | None = None,
    kinds: tuple[str, ...] = (),
    limit: int = 1000,
) -> list[Event]:
    q = select(Event)
    if run_id is not None:
        q = q.where(Event.run_id == run_id)
    if sweep_id is not None:
        q = q.where(Event.sweep_id == sweep_id)
    if kinds:
        q = q.where(col(Event.kind).in_(kinds))
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


def stop_answer(run: RunRef | Run) -> tuple[str, str | None]:
    """The answer to a trainer's post: continue, or stop (cancelled, or a stop requested)."""
    if run.status in FINISHED:
        return "stop", f"run {run.id} is {run.status}"
    if run.stop_reason:
        return "stop", run.stop_reason
    return "continue", None


def request_stop(engine: Engine, *, run_id: int, kind: str, reason: str, evidence: dict) -> bool:
    """Record a decision to stop a run (e.g. the kill rule's verdict) with its evidence; the
    trainer learns it in its next answer, and the run ends when its exit arrives. False when a
    stop was already requested (the first decision stands)."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None or run.stop_reason or run.status in FINISHED:
            return False
        run.stop_reason = reason
        run.updated_at = now()
        s.add(run)
        s.add(
            Event(
                run_id=run.id,
                sweep_id=run.sweep_id,
                time=now(),
                kind=kind,
                reason=reason,
                data_json=json.dumps(evidence),
            )
        )
    return True


def heartbeat(
    engine: Engine,
    *,
    run: RunRef,
    step: int | None,
    tokens: int | None,
    attempt: int | None = None,
    pricing: Prices | None = None,
) -> tuple[str, str | None]:
    with write_session(engine) as s:
        r = lock_run(s, run.id)
        if r.token_hash != run.token_hash:
            # authorised against an attempt that has ended since (a lease expired meanwhile):
            # it must not count as the new attempt's first sign of life
            raise PermissionError(f"run {run.id}'s token was revoked: a newer attempt owns it")
        if attempt is not None and attempt > r.attempt and r.status in ACTIVE:
            # resumed outside the runner (a spot recovery the cloud made): a new attempt
            _recover(
                s,
                r,
                attempt,
                f"the trainer resumed as attempt {attempt} (recovered outside the runner, e.g. "
                f"a spot relaunch) at step {step}",
                pricing,
            )
        r.last_heartbeat = now()
        if r.running_since is None:
            r.running_since = r.last_heartbeat  # alive: running, whatever the launcher saw
        if tokens is not None:
            r.tokens_seen = max(r.tokens_seen, tokens)
        if r.status == "launching":
            _transition(s, r, "running", "first heartbeat", None)
        s.add(r)
        s.commit()
        return stop_answer(r)


def outbox_heartbeat(
    engine: Engine,
    *,
    run_id: int,
    at: float,
    tokens: int,
    attempt: int | None,
    pricing: Prices | None = None,
) -> None:
    """A heartbeat read from a job's outbox files (no inbound connection): the same as a
    posted one, at the service's own time `at`."""
    with write_session(engine) as s:
        r = lock_run(s, run_id)
        if r is None or r.status not in ACTIVE:
            return
        if isinstance(attempt, int) and attempt > r.attempt:
            _recover(
                s,
                r,
                attempt,
                f"the trainer resumed as attempt {attempt} (its outbox "
                "says so: recovered outside the runner)",
                pricing,
            )
        r.last_heartbeat = at
        r.running_since = r.running_since or at
        r.tokens_seen = max(r.tokens_seen, tokens)
        if r.status == "launching":
            _transition(s, r, "running", "first heartbeat (read from its outbox)", None)
        s.add(r)


def store_result(engine: Engine, *, run_id: int, metrics: dict[str, Any]) -> Run:
    """Keep the run's final metrics.json (replacing an earlier one). The run's status follows
    its exit, not this document."""
    doc = json.dumps(metrics, allow_nan=False)
    sample = bool((metrics.get("provenance") or {}).get("sample"))
    with write_session(engine) as s:
        r = lock_run(s, run_id)
        if r is None:
            raise NotFound(f"run {run_id} does not exist")
        existing = s.get(Result, run_id)
        if existing is None:
            s.add(Result(run_id=run_id, metrics_json=doc, sample=sample, created_at=now()))
        else:
            existing.metrics_json, existing.sample = doc, sample
            s.add(existing)
        tokens = (metrics.get("training") or {}).get("tokens_seen")
        if isinstance(tokens, int) and tokens > r.tokens_seen:
            r.tokens_seen = tokens
            s.add(r)
        s.commit()
        s.refresh(r)
        return r


def get_result(engine: Engine, *, run_id: int) -> dict | None:
    with Session(engine) as s:
        res = s.get(Result, run_id)
        return json.loads(res.metrics_json) if res else None


def results_for(engine: Engine, *, run_ids: list[int]) -> dict[int, dict]:
    if not run_ids:
        return {}
    with Session(engine) as s:
        rows = s.exec(select(Result).where(col(Result.run_id).in_(run_ids))).all()
    return {r.run_id: json.loads(r.metrics_json) for r in rows}


def metric_series(
    engine: Engine, *, run_id: int, name: str, max_points: int = 500, after_step: int | None = None
) -> tuple[list[dict[str, int | float]], int]:
    """Points of one metric by step, at most max_points: first and last kept, and each span's
    min and max (runner.ledger.series). `after_step`: only the points after it."""
    get_run(engine, run_id=run_id)
    s = series.read(engine, run_id, name, max_points, after_step)
    return [{"step": p[0], "tokens": p[1], "value": p[2]} for p in s.points], s.total


# ---------------------------------------------------------------- sweeps


def get_sweep(engine: Engine, *, sweep_id: int) -> Sweep:
    with Session(engine) as s:
        sw = s.get(Sweep, sweep_id)
    if sw is None:
        raise NotFound(f"sweep {sweep_id} does not exist")
    return sw


def list_sweeps(engine: Engine, *, status: str | None = None) -> list[Sweep]:
    q = select(Sweep)
    if status:
        q = q.where(Sweep.status == status)
    with Session(engine) as s:
        return list(s.exec(q.order_by(col(Sweep.id).desc())).all())


def sweep_runs(engine: Engine, *, sweep_id: int, phases: tuple[str, ...] = ()) -> list[Run]:
    q = select(Run).where(Run.sweep_id == sweep_id)
    if phases:
        q = q.where(col(Run.phase).in_(phases))
    with Session(engine) as s:
        return list(s.exec(q.order_by(col(Run.id))).all())


def run_counts(engine: Engine, *, sweep_ids: list[int]) -> dict[int, dict[str, int]]:
    """{sweep id: {status: runs}}."""
    out: dict[int, dict[str, int]] = {i: {} for i in sweep_ids}
    if not sweep_ids:
        return out
    with Session(engine) as s:
        rows = s.exec(
            select(Run.sweep_id, Run.status, func.count())
            .where(col(Run.sweep_id).in_(sweep_ids))
            .group_by(Run.sweep_id, Run.status)
        ).all()
    for sweep_id, status, n in rows:
        out[sweep_id][status] = n
    return out


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
        s.add(
            Event(
                sweep_id=sweep.id,
                time=t,
                kind="sweep",
                reason=f"submitted {kind} {name!r}: {len(runs)} runs, "
                f"{len(infeasible)} infeasible cells",
            )
        )
        for r in runs:
            add_queued_run(
                s,
                r["cfg"],
                reason=f"cell {r['cell']} of sweep {sweep.id}",
                sweep_id=sweep.id,
                **{k: v for k, v in r.items() if k != "cfg"},
            )
        for i in infeasible:
            s.add(
                Event(
                    sweep_id=sweep.id,
                    time=t,
                    kind="infeasible",
                    reason=i["reason"],
                    data_json=json.dumps(i),
                )
            )
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
                select(Run.id).where(
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
        sw.status = "active" if phase != "done" else "done"
        sw.updated_at = t
        s.add(sw)
        decision = {**decision, "created_runs": created}
        s.add(
            Event(
                sweep_id=sweep_id,
                time=t,
                kind="promotion",
                reason=reason,
                data_json=json.dumps(decision, default=str),
            )
        )
    return created


def close_sweep(engine: Engine, *, sweep_id: int, reason: str) -> None:
    with write_session(engine) as s:
        sw = s.get(Sweep, sweep_id, with_for_update=True)
        sw.phase, sw.status, sw.updated_at = "done", "done", now()
        s.add(sw)
        s.add(Event(sweep_id=sweep_id, time=now(), kind="sweep", reason=reason))
