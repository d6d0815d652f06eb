"""A lost lease is decided by one conditional UPDATE, on SQLite and PostgreSQL: a heartbeat that
lands between the scheduler's judgement and its requeue keeps the run, and a run is requeued
once however many judges act on one judgement."""

from __future__ import annotations

import pytest

from runner.ledger import events
from runner.ledger.lifecycle import claim_queued, requeue_or_fail, set_status
from runner.ledger.runs import create_run, get_run, set_run_fields
from tests.helpers import tiny_raw

pytestmark = pytest.mark.both_backends


@pytest.fixture
def engine(ledger):
    from runner.ledger.db import make_engine, upgrade

    upgrade(ledger)
    engine = make_engine(ledger)
    yield engine
    engine.dispose()


def claimed_run(engine, tok_root):
    from trainer.config import validate

    create_run(engine, cfg=validate(tiny_raw(tok_root)))
    ((run, _),) = claim_queued(engine, limit=1, launcher="test")
    set_status(engine, run_id=run.id, to="running", reason="test", pricing=None)
    set_run_fields(engine, run_id=run.id, last_heartbeat=100.0)
    return get_run(engine, run_id=run.id)


def test_a_heartbeat_after_the_judgement_keeps_the_run(engine, tokenized_dir):

    run = claimed_run(engine, tokenized_dir.parent)
    judged = (run.attempt, run.last_heartbeat)  # the scheduler read this and found it stale
    set_run_fields(engine, run_id=run.id, last_heartbeat=160.0)  # then the trainer spoke
    kept = requeue_or_fail(
        engine, run_id=run.id, reason="lease", max_attempts=3, pricing=None, lost=True,
        silent_since=judged,
    )  # fmt: skip
    assert kept is None
    assert get_run(engine, run_id=run.id).status == "running"


def test_one_judgement_requeues_once(engine, tokenized_dir):

    run = claimed_run(engine, tokenized_dir.parent)
    judged = (run.attempt, run.last_heartbeat)
    results = [
        requeue_or_fail(
            engine,
            run_id=run.id,
            reason="lease",
            max_attempts=3,
            pricing=None,
            lost=True,
            silent_since=judged,
        )  # fmt: skip
        for _ in range(2)  # a second judge acting on the same stale reading
    ]
    assert results[0] is not None and results[0].status == "queued"
    assert results[1] is None
    requeued = [
        e for e in events.events(engine, run_id=run.id) if "requeued" in (e["reason"] or "")
    ]
    assert len(requeued) == 1
