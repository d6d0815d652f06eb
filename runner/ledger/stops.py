"""Stop requests: a decision to stop a run (the kill rule's verdict) recorded with its
evidence, and the answer a trainer hears at each post or flush (continue, or stop). The run's
status follows when its exit arrives (runner.ledger.lifecycle)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from runner.ledger.db import lock_run, write_session
from runner.ledger.events import event, now
from runner.ledger.models import FINISHED, Run
from runner.ledger.runs import RunRef


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
        s.add(event(kind=kind, reason=reason, run_id=run.id, sweep_id=run.sweep_id, data=evidence))
    return True
