"""A run's life: the one place its status changes.

queued -> launching (a claim) -> running (its first heartbeat, or its launcher saw it start)
-> succeeded / killed / failed (its exit, `apply_exit`) or back to queued (a crash, a
preemption or a lost lease, until the retry limit); cancelled by a user; requeued by a user.
Each change writes its event and ends (and charges) the attempt that ended, in one
transaction, so a run's history never disagrees with its status or its cost. A decision (the
kill rule's verdict) is an event and a stop request; the status follows when the exit arrives,
whoever reports it: a local process, a worker, a container, a SkyPilot job, a bucket.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from runner.auth import hash_token
from runner.ledger import attempts
from runner.ledger.attempts import Placement, Prices, Usage
from runner.ledger.db import lock_run, write_session
from runner.ledger.errors import Conflict, NotFound
from runner.ledger.events import event, now
from runner.ledger.models import ACTIVE, FINISHED, Run, Sweep
from runner.ledger.runs import CLAIMABLE, get_run
from runner.ledger.stops import stop_answer
from trainer.exits import EXIT_BAD_CONFIG, EXIT_KILLED, EXIT_OK, EXIT_PREEMPTED

REQUEUABLE = ("failed", "lost", "cancelled")


def _transition(
    s: Session,
    run: Run,
    to: str,
    reason: str,
    pricing: Prices | None,
    usage: Usage | None = None,
    outcome: str | None = None,
    ended_at: float | None = None,
    **fields: Any,
) -> None:
    """Change a run's status and record why, in the caller's transaction. Leaving an active
    state ends the current attempt (its outcome: `outcome`, else the new status), which is
    charged then (runner.ledger.attempts), up to `ended_at` when given, else now."""
    t = now()
    s.add(
        event(
            kind="state",
            reason=reason,
            run_id=run.id,
            sweep_id=run.sweep_id,
            t=t,
            from_status=run.status,
            to_status=to,
        )
    )
    if run.status in ACTIVE and to not in ACTIVE:
        end = t if ended_at is None else min(t, max(ended_at, run.started_at or ended_at))
        attempts.end(s, run, t=end, outcome=outcome or to, prices=pricing, usage=usage)
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
) -> Run | None:
    """Move a run to `to` if it is still in one of `only_from` (any state when empty); None
    when it was not (someone else settled it first). `usage`: what the ending attempt used,
    when its launcher measured it (a cloud's job duration and provisioned GPU)."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None or (only_from and run.status not in only_from):
            return None
        _transition(s, run, to, reason, pricing, usage)
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
            if sweep is not None and sweep.status == "done":
                raise Conflict(
                    f"run {run_id} belongs to sweep {run.sweep_id}, which is {sweep.status}; "
                    "submit a new run instead"
                )
        _transition(
            s, run, "queued", "requeued by the user", pricing, token_hash=None, stop_reason=None
        )
        run.finished_at = run.exit_reason = None
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
            # A worker's run is charged to when it was last heard: its VM may be gone, and the
            # silence is on the VM's bill as idle (runs + idle = VM). Others held the GPU till now.
            worker = (run.launcher or "").startswith("worker:")
            heard = (run.last_heartbeat or run.started_at) if worker else None
            _transition(s, run, "lost", reason, pricing, usage, ended_at=heard)
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
# A run waiting out a launch error's back-off (`not_before`), or in a paused sweep, is skipped.
_NEXT = f"SELECT id FROM runs WHERE {CLAIMABLE} ORDER BY priority DESC, created_at, id LIMIT 1"
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
                {"kinds": list(kinds) or [""], "any_kind": takes_unassigned, "now": now()},
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
            why = f"claimed by the {launcher} launcher (attempt {got[2]})"
            s.add(
                event(
                    kind="state",
                    reason=why,
                    run_id=run.id,
                    sweep_id=got[1],
                    t=t,
                    from_status="queued",
                    to_status="launching",
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


def unclaim(
    engine: Engine,
    *,
    run_id: int,
    reason: str,
    retry_in: float | None,
    only_from: tuple[str, ...] = ("launching",),
) -> Run | None:
    """A launch that did not happen (its launcher refused, or the platform found no machines):
    the run goes back to the queue as if never claimed (its attempt is not used up and costs
    nothing), to be tried again after `retry_in` seconds (None: when a user resumes its sweep).
    A retried launch counts as one more error in a row, for the back-off; a held one does not
    (the runs of a paused sweep start again from the first wait). None when it was no longer
    in `only_from`."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None or run.status not in only_from:
            return None
        t = now()
        attempts.forget(s, run)
        s.add(
            event(
                kind="state",
                reason=reason,
                run_id=run.id,
                sweep_id=run.sweep_id,
                t=t,
                from_status=run.status,
                to_status="queued",
                data={"retry_at": t + retry_in if retry_in else None},
            )
        )
        run.status, run.updated_at = "queued", t
        run.attempt = max(0, run.attempt - 1)
        run.token_hash = run.backend_id = None
        run.started_at = run.running_since = run.last_heartbeat = None
        run.launch_errors = run.launch_errors + 1 if retry_in else 0
        run.not_before = t + retry_in if retry_in else None
        s.add(run)
        s.commit()
        s.refresh(run)
        return run


def mark_running(engine: Engine, *, run_id: int, reason: str, since: float | None = None) -> None:
    """Its launcher started the job, or saw it start (a cloud job SkyPilot reports RUNNING):
    launching -> running, the launch back-off reset, and the start-up grace counted from
    `since` when given."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None or run.status not in ACTIVE:
            return
        if run.status == "launching":
            _transition(s, run, "running", reason, None, launch_errors=0, not_before=None)
        if since is not None and run.running_since is None:
            run.running_since = since
        s.add(run)


# ---------------------------------------------------------------- what the trainer hears


def heartbeat(
    engine: Engine,
    *,
    run_id: int,
    tokens: int | None,
    step: int | None = None,
    attempt: int | None = None,
    at: float | None = None,
    token_hash: str | None = None,
    fenced: bool = False,
    pricing: Prices | None = None,
    source: str = "posted",
) -> tuple[str, str | None]:
    """The trainer is alive at `tokens`, whether it posted (`fenced`: only with the current
    attempt's token) or left heartbeat.json in its run folder (`source`, read at the service's
    own time `at`). A higher `attempt` than the ledger's is a resume outside the runner (a spot
    relaunch): a new attempt. The first heartbeat moves a launching run to running."""
    with write_session(engine) as s:
        r = lock_run(s, run_id)
        if r is None:
            raise NotFound(f"run {run_id} does not exist")
        if fenced and r.token_hash != token_hash:
            # authorised against an attempt that has ended since (a lease expired meanwhile):
            # it must not count as the new attempt's first sign of life
            raise PermissionError(f"run {run_id}'s token was revoked: a newer attempt owns it")
        if r.status in ACTIVE:
            if isinstance(attempt, int) and attempt > r.attempt:
                why = (
                    f"the trainer resumed as attempt {attempt} at step {step} ({source}: "
                    "recovered outside the runner, e.g. a spot relaunch)"
                )
                attempts.recover(s, r, attempt, why, pricing)
            r.last_heartbeat = now() if at is None else at
            r.running_since = r.running_since or r.last_heartbeat
            if tokens is not None:
                r.tokens_seen = max(r.tokens_seen, tokens)
            if r.status == "launching":
                _transition(
                    s,
                    r,
                    "running",
                    f"first heartbeat ({source})",
                    None,
                    launch_errors=0,
                    not_before=None,
                )
            s.add(r)
        s.commit()
        return stop_answer(r)


# ---------------------------------------------------------------- exits


def apply_exit(
    engine: Engine,
    *,
    run_id: int,
    code: int,
    max_attempts: int,
    pricing: Prices | None,
    log: str,
    metrics: dict | None = None,
    usage: Usage | None = None,
    cause: str | None = None,
) -> None:
    """The run's next state from its trainer's exit code (the documented codes, trainer.exits):
    the one place an exit becomes a state, whoever reports it (local launcher, worker, cloud
    job, import). A queued run may be finished too: a result imported for a run trained
    elsewhere. `cause`: the platform's account of a failure that was not the trainer's (a
    cloud job's failed set-up), said instead of "trainer crashed"."""
    retry = {"run_id": run_id, "max_attempts": max_attempts, "pricing": pricing, "usage": usage}
    stop_reason = get_run(engine, run_id=run_id).stop_reason
    if code == EXIT_PREEMPTED:
        requeue_or_fail(
            engine, outcome="preempted", reason="preempted (exit 75; checkpoint written)", **retry
        )
        return
    if code not in (EXIT_OK, EXIT_KILLED, EXIT_BAD_CONFIG):
        why = cause or f"trainer crashed (exit {code}); see {log}"
        requeue_or_fail(engine, reason=why, **retry)
        return
    if code == EXIT_OK:
        doc = (metrics or {}).get("run") or {}
        status = doc.get("status") if doc.get("status") in FINISHED else "succeeded"
        reason = doc.get("exit_reason") or "trainer exited 0"
    elif code == EXIT_KILLED:
        status, reason = "killed", stop_reason or "stopped by the kill rule (exit 3)"
    else:
        status, reason = "failed", f"bad config or input (exit 2); see {log}"
    set_status(
        engine,
        run_id=run_id,
        to=status,
        reason=reason,
        pricing=pricing,
        usage=usage,
        only_from=(*ACTIVE, "queued"),
    )
