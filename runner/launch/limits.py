"""When an active run must stop or is lost, by the scheduler's clock: its time and cost
limits (PAX_MAX_RUN_HOURS, PAX_MAX_RUN_USD), and its lease (a start-up grace counted from when
its launcher saw it running, then PAX_LEASE_S between heartbeats)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from runner.ledger import attempts
from runner.ledger.models import Run
from runner.settings import Settings


def over_limit(engine: Engine, s: Settings, run: Run, now: float) -> str | None:
    """A reason to stop a run that ran too long or cost too much, or None."""
    since = run.running_since or run.started_at
    if not since:
        return None
    if s.max_run_hours and now - since > 3600 * s.max_run_hours:
        return f"time limit: running {(now - since) / 3600:.2f} h > {s.max_run_hours} h"
    if s.max_run_usd and attempts.running_cost(engine, run_id=run.id, t=now) > s.max_run_usd:
        return f"cost limit: over ${s.max_run_usd:.2f} (PAX_MAX_RUN_USD)"
    return None


def lease_expired(s: Settings, run: Run, now: float, judge_from: float) -> bool:
    """Whether the run has been silent too long. `judge_from`: a service that just started
    (or just became the leader) cannot know how long it was away, so a run active before then
    gets one full lease first."""
    if now < judge_from and (run.started_at or 0) < judge_from - s.lease_s:
        return False  # active before this service started: its grace is not over
    if run.last_heartbeat is None:  # not heard from yet: start-up grace, from running
        since = run.running_since or run.started_at
        return since is not None and now - since > s.startup_grace_s
    return now - run.last_heartbeat > s.lease_s
