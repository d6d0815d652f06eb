"""Events: the ledger's history. Every state change, decision (kill, promotion), attempt and
infeasible cell is one row, written in the transaction of what it records. `event` builds the
row (the one place an Event is made); `events` is the one reader (plain dicts, data parsed)."""

from __future__ import annotations

import json
import time

from sqlalchemy import select
from sqlalchemy.engine import Engine

from runner.ledger.db import write_session
from runner.ledger.models import Event

E = Event.__table__.c
KEYS = ("id", "run_id", "sweep_id", "time", "kind", "from_status", "to_status", "reason")


def now() -> float:
    """The ledger's clock: the service's own time, never a trainer's or a cloud machine's."""
    return time.time()


def event(
    *,
    kind: str,
    reason: str | None,
    run_id: int | None = None,
    sweep_id: int | None = None,
    t: float | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    data: dict | None = None,
) -> Event:
    """An event row, for the caller to add in its own transaction."""
    return Event(
        run_id=run_id,
        sweep_id=sweep_id,
        time=now() if t is None else t,
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
        data_json=json.dumps(data, default=str) if data is not None else None,
    )


def add_event(
    engine: Engine,
    *,
    kind: str,
    reason: str,
    run_id: int | None = None,
    sweep_id: int | None = None,
    data: dict | None = None,
) -> None:
    """An event on its own (a note that changes nothing else)."""
    with write_session(engine) as s:
        s.add(event(kind=kind, reason=reason, run_id=run_id, sweep_id=sweep_id, data=data))


def events(
    engine: Engine,
    *,
    run_id: int | None = None,
    sweep_id: int | None = None,
    kinds: tuple[str, ...] = (),
    limit: int | None = None,
) -> list[dict]:
    """A run's or a sweep's events (of `kinds`, when given), oldest first, as plain dicts
    (the API's EventPublic): id, run_id, sweep_id, time, kind, from_status, to_status, reason
    and data (parsed)."""
    q = select(*(E[k] for k in KEYS), E.data_json)
    if run_id is not None:
        q = q.where(E.run_id == run_id)
    if sweep_id is not None:
        q = q.where(E.sweep_id == sweep_id)
    if kinds:
        q = q.where(E.kind.in_(kinds))
    q = q.order_by(E.id)
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return [
        {**dict(zip(KEYS, r[:-1], strict=True)), "data": json.loads(r[-1]) if r[-1] else None}
        for r in rows
    ]
