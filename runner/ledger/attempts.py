"""Attempts: one row per try at a run, with where it ran, on what, for how long and what it cost.

An attempt begins when a launcher claims the run and ends when the run leaves an active state
(done, killed, lost, preempted, cancelled) or when the cloud recovers it onto new machines. Its
cost is the time it ran times the price of the GPU actually provisioned; a run's gpu_hours and
cost_usd are the sums over its attempts. When several runs share one GPU (slots), an attempt
names the device, and each moment of that GPU is split evenly between the attempts on it then:
a run alone pays the whole GPU, two together pay half each, so the GPU's time is charged once.
The in-session functions (begin, observe, end) work in the caller's transaction (the
lifecycle's); the others open their own, or read: what attempts ran, and what they cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, text
from sqlalchemy import select as core_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, or_, select

from runner.ledger.db import DEVICE_LOCK, lock_run, write_session
from runner.ledger.events import event, now
from runner.ledger.models import ACTIVE, Attempt, LatestMetric, Run, Sweep

A = Attempt.__table__.c
R = Run.__table__.c
L = LatestMetric.__table__.c


@dataclass(frozen=True)
class Placement:
    """Where an attempt runs, as far as its launcher knows when it claims the run."""

    accelerator: str | None = None  # None: a CPU, free
    spot: bool = False
    gpus: float = 1.0  # a fixed share of one GPU (unused when `device` is named)
    device: str | None = None  # host:gpuN: shared with whatever else runs there, by time


@dataclass(frozen=True)
class Usage:
    """What an attempt used, as its launcher observed it (a cloud's job duration and the
    resources it provisioned); unknown fields are None."""

    seconds: float | None = None
    accelerator: str | None = None
    spot: bool | None = None
    resources: dict | None = None
    # the GPU to charge when none was ever seen (a cloud that stopped saying which GPU it
    # used once the machine was gone): the dearest the job could have had, never $0
    assumed: str | None = None


class Prices(Protocol):
    """runner.cost.Pricing, as the ledger needs it."""

    def price_for(self, accelerator: str | None, spot: bool) -> tuple[float, str]: ...


def current(s: Session, run: Run) -> Attempt | None:
    return s.exec(
        select(Attempt).where(Attempt.run_id == run.id, Attempt.attempt == run.attempt)
    ).first()


def begin(
    s: Session,
    run: Run,
    *,
    attempt: int,
    launcher: str,
    placement: Placement,
    prices: Prices | None,
    t: float,
    backend_id: str | None = None,
) -> Attempt:
    price, source = (
        prices.price_for(placement.accelerator, placement.spot)
        if prices is not None
        else (0.0, "unpriced")
    )
    row = Attempt(
        run_id=run.id,
        attempt=attempt,
        launcher=launcher,
        backend_id=backend_id,
        accelerator=placement.accelerator,
        gpus=placement.gpus,
        device=placement.device,
        spot=placement.spot,
        price_per_hour=price,
        price_source=source,
        started_at=t,
    )
    s.add(row)
    return row


def forget(s: Session, run: Run) -> None:
    """Drop the current attempt of a launch that never happened (nothing ran, nothing is owed:
    the launcher refused it, or the platform found no machines for it)."""
    row = current(s, run)
    if row is not None and row.ended_at is None:
        s.delete(row)


def observe(s: Session, run: Run, usage: Usage, prices: Prices | None) -> None:
    """The launcher learned what the current attempt runs on (a cloud's provisioned GPU):
    record it, and price the attempt by it."""
    row = current(s, run)
    if row is None or row.ended_at is not None:
        return
    if usage.accelerator is not None:
        row.accelerator = usage.accelerator
    if usage.spot is not None:
        row.spot = usage.spot
    if usage.resources is not None:
        row.resources = json.dumps(usage.resources, default=str)
    if prices is not None and (usage.accelerator is not None or usage.spot is not None):
        row.price_per_hour, row.price_source = prices.price_for(row.accelerator, row.spot)
    s.add(row)


def end(
    s: Session,
    run: Run,
    *,
    t: float,
    outcome: str,
    prices: Prices | None,
    usage: Usage | None = None,
) -> Attempt | None:
    """Close the current attempt and charge it to the run: its own duration (or the one the
    launcher measured) times its GPU share times its price."""
    row = current(s, run)
    if row is None or row.ended_at is not None:
        return None
    if row.device:
        lock_device(s, row.device)
    if usage is not None:
        observe(s, run, usage, prices)
        if row.accelerator is None and usage.assumed and prices is not None:
            row.accelerator = usage.assumed
            price, source = prices.price_for(row.accelerator, row.spot)
            row.price_per_hour = price
            row.price_source = (
                f"{source}; ASSUMED {usage.assumed}, the dearest GPU the job could have had: "
                "the cloud never said which it used"
            )
    row.ended_at = t
    row.outcome = outcome
    row.seconds = max(
        0.0, usage.seconds if usage and usage.seconds is not None else t - row.started_at
    )
    if row.device:
        row.gpus = shared_seconds(s, row, t) / row.seconds if row.seconds else 1.0
    row.gpu_hours = row.seconds / 3600 * row.gpus if row.accelerator else 0.0
    row.cost_usd = row.gpu_hours * (row.price_per_hour or 0.0)
    run.gpu_hours = (run.gpu_hours or 0.0) + row.gpu_hours
    run.cost_usd = (run.cost_usd or 0.0) + row.cost_usd
    s.add(row)
    return row


def running_cost(engine: Engine, *, run_id: int, t: float) -> float:
    """What the run has cost so far, its open attempt included (for cost limits)."""
    with Session(engine) as s:
        run = s.get(Run, run_id)
        return _running_cost(s, run, t) if run is not None else 0.0


def _running_cost(s: Session, run: Run, t: float) -> float:
    row = current(s, run)
    open_cost = 0.0
    if row is not None and row.ended_at is None and row.accelerator:
        gpu_s = shared_seconds(s, row, t) if row.device else (t - row.started_at) * row.gpus
        open_cost = gpu_s / 3600 * (row.price_per_hour or 0.0)
    return (run.cost_usd or 0.0) + open_cost


def lock_device(s: Session, device: str) -> None:
    """On PostgreSQL, one attempt on a device ends at a time (a lock held to the commit):
    two runs ending within a millisecond each read the other as still running (read
    committed), and the later one paid half of a stretch it had alone. SQLite writes one
    transaction at a time already."""
    if s.get_bind().dialect.name == "postgresql":
        s.connection().execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(:device))"),
            {"ns": DEVICE_LOCK, "device": device},
        )


def shared_seconds(s: Session, row: Attempt, t: float) -> float:
    """GPU-seconds of `row` on its device from its start to `t`: every stretch of time split
    evenly between the attempts on that device then (still-open ones count as running)."""
    a = row.started_at
    others = s.exec(
        select(Attempt).where(
            Attempt.device == row.device,
            Attempt.id != row.id,
            Attempt.started_at < t,
            or_(Attempt.ended_at.is_(None), Attempt.ended_at > a),
        )
    ).all()
    spans = [(max(o.started_at, a), min(o.ended_at if o.ended_at else t, t)) for o in others]
    edges = sorted({a, t, *(x for span in spans for x in span if a <= x <= t)})
    total = 0.0
    for lo, hi in zip(edges, edges[1:], strict=False):
        mid = (lo + hi) / 2
        total += (hi - lo) / (1 + sum(1 for x, y in spans if x <= mid < y))
    return total


# ---------------------------------------------------------------- what a launcher learned


def observe_attempt(engine: Engine, *, run_id: int, usage: Usage, pricing: Prices | None) -> None:
    """What the current attempt runs on, as its launcher learned it (the GPU a cloud
    provisioned)."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is not None and run.status in ACTIVE:
            observe(s, run, usage, pricing)


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
        row = current(s, run)
        if row is not None:
            row.backend_id = backend_id
            row.device = device or row.device
            s.add(row)
        s.add(run)


def recover(
    s: Session, run: Run, attempt: int, reason: str, pricing, usage=None, t: float | None = None
) -> None:
    """In the caller's transaction: the current attempt ends as preempted and attempt number
    `attempt` begins on the same placement, with its own start time and start-up grace."""
    t = t if t is not None else now()
    previous = current(s, run)
    end(s, run, t=t, outcome="preempted", prices=pricing, usage=usage)
    data = {"attempt": attempt, "from": run.attempt}
    s.add(
        event(kind="attempt", reason=reason, run_id=run.id, sweep_id=run.sweep_id, t=t, data=data)
    )
    placement = (
        Placement(previous.accelerator, previous.spot, previous.gpus)
        if previous is not None
        else Placement()
    )
    run.attempt = attempt
    run.running_since = None
    run.last_heartbeat = None  # the recovered attempt gets its own start-up grace
    begin(
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
    cloud handled): a new attempt (`recover`). Idempotent: an attempt already recorded is not
    recorded again. `prior_seconds`: the platform's running time before this recovery."""
    with write_session(engine) as s:
        run = lock_run(s, run_id)
        if run is None or run.status not in ACTIVE or attempt <= run.attempt:
            return False
        if prior_seconds is not None:
            # less what earlier attempts on the same job already account for
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
        recover(s, run, attempt, reason, pricing, usage, t=t)
    return True


def recoveries_recorded(engine: Engine, *, run_id: int, backend_id: str | None) -> int:
    """How many recoveries of this job the ledger holds (its attempts on it, less the first)."""
    if backend_id is None:
        return 0
    with engine.connect() as conn:
        n = conn.execute(
            core_select(func.count()).where(A.run_id == run_id, A.backend_id == backend_id)
        ).scalar()
    return max(0, int(n) - 1)


# ---------------------------------------------------------------- reads for cost


def runs_sharing(s: Session, run: Run, start: float, end: float) -> int | None:
    """How many other runs had an attempt on this run's device between `start` and `end` (a
    latency measured then was contended), or None when the run has no named device (a CPU
    run, a VM of its own)."""
    row = current(s, run)
    if row is None or not row.device:
        return None
    others = core_select(func.count(func.distinct(A.run_id))).where(
        A.device == row.device,
        A.run_id != run.id,
        A.started_at <= end,
        (A.ended_at.is_(None)) | (A.ended_at >= start),
    )
    return int(s.scalar(others) or 0)


def attempt_rows(
    engine: Engine, *, sweep_id: int | None = None, run_id: int | None = None
) -> list[dict]:
    """Every attempt (of a sweep's runs, or of one run): where it ran, on what, for how long,
    at what price, with what outcome and cost."""
    q = (
        core_select(*(A[c] for c in ATTEMPT_COLUMNS))
        .select_from(Attempt.__table__.join(Run.__table__, R.id == A.run_id))
        .order_by(A.run_id, A.attempt)
    )
    if sweep_id is not None:
        q = q.where(R.sweep_id == sweep_id)
    if run_id is not None:
        q = q.where(A.run_id == run_id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q).all()]


ATTEMPT_COLUMNS = (
    "run_id", "attempt", "launcher", "backend_id", "accelerator", "gpus", "device", "spot",
    "price_per_hour", "price_source", "started_at", "ended_at", "outcome", "seconds",
    "gpu_hours", "cost_usd",
)  # fmt: skip
COST_COLUMNS = (
    "id", "name", "phase", "status", "attempt", "gpu_hours", "cost_usd", "max_tokens",
    "tokens_seen", "priority", "cell",
)  # fmt: skip


def sweep_cost_rows(engine: Engine, *, sweep_id: int) -> tuple[list[dict], float | None]:
    """(a sweep's runs with their attempts, hours and cost; the sweep's budget)."""
    keys = tuple("attempts" if c == "attempt" else c for c in COST_COLUMNS)
    with engine.connect() as conn:
        rows = conn.execute(
            core_select(*(R[c] for c in COST_COLUMNS)).where(R.sweep_id == sweep_id).order_by(R.id)
        ).all()
        budget = conn.execute(
            core_select(Sweep.__table__.c.budget_usd).where(Sweep.__table__.c.id == sweep_id)
        ).scalar()
    return [dict(zip(keys, r, strict=True)) for r in rows], budget


def cost_overview(engine: Engine) -> dict:
    """The dearest 500 runs, every sweep phase's totals, and the ledger's."""
    with engine.connect() as conn:
        by_run = conn.execute(
            core_select(R.id, R.name, R.sweep_id, R.phase, R.status, R.gpu_hours, R.cost_usd)
            .order_by(R.cost_usd.desc(), R.id.desc())
            .limit(500)
        ).all()
        phase = func.coalesce(R.phase, "-")
        by_phase = conn.execute(
            core_select(
                R.sweep_id, phase, func.count(), func.sum(R.gpu_hours), func.sum(R.cost_usd)
            )
            .group_by(R.sweep_id, phase)
            .order_by(R.sweep_id, phase)
        ).all()
        total = conn.execute(
            core_select(
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


def measured_tokens_per_s(
    engine: Engine, *, accelerator: str | None, sweep_id: int | None = None
) -> float | None:
    """The mean measured training speed of runs whose attempts ran on `accelerator` (a
    sweep's, or the whole ledger's), or None when none has been measured."""
    ran_on = core_select(A.run_id).where(A.accelerator.is_not_distinct_from(accelerator))
    q = (
        core_select(func.avg(L.value))
        .select_from(LatestMetric.__table__.join(Run.__table__, R.id == L.run_id))
        .where(L.name == "train/tokens_per_s", L.run_id.in_(ran_on))
    )
    if sweep_id is not None:
        q = q.where(R.sweep_id == sweep_id)
    with engine.connect() as conn:
        v = conn.execute(q).scalar()
    return float(v) if v else None
