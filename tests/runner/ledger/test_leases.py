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


def test_a_lost_worker_run_is_charged_until_it_was_last_heard(engine, tokenized_dir):
    """A preempted worker's run was charged until its lease was judged lost, after its VM was
    gone: in the e2e its share of the worker's GPU came to more than the VM's whole time (runs
    over VM, idle negative). Now a worker's run is charged to its last heartbeat (never heard:
    nothing); the silence stays on the VM's bill as idle. A run of another launcher held its
    GPU until the judgement, and is charged to it."""
    from sqlalchemy import update

    from runner.cost import Pricing
    from runner.ledger.attempts import Placement, attempt_rows
    from runner.ledger.events import now
    from runner.ledger.models import Attempt
    from trainer.config import validate

    pricing = Pricing()
    price = pricing.hourly("H100", True)
    cfg = validate(tiny_raw(tokenized_dir.parent))
    place = Placement(accelerator="H100", spot=True, gpus=1.0, device="pax-w1:gpu0")
    rows = {}
    for launcher, heard in (("worker:pax-w1", 30.0), ("worker:pax-w1", None), ("local", 30.0)):
        create_run(engine, cfg=cfg, launcher=launcher.split(":")[0])
        ((run, _),) = claim_queued(
            engine, limit=1, launcher=launcher, kinds=(launcher.split(":")[0],),
            placement=place if launcher != "local" else Placement(accelerator="H100", spot=True),
            pricing=pricing, running="test",
        )  # fmt: skip
        started = get_run(engine, run_id=run.id).started_at
        # silent for a long while: heard 30 s after its claim, then judged a minute later
        set_run_fields(engine, run_id=run.id, started_at=started - 90)
        with engine.begin() as conn:  # its attempt began then too
            conn.execute(
                update(Attempt).where(Attempt.run_id == run.id).values(started_at=started - 90)
            )
        if heard is not None:
            set_run_fields(engine, run_id=run.id, last_heartbeat=started - 90 + heard)
        run = get_run(engine, run_id=run.id)
        requeue_or_fail(
            engine,
            run_id=run.id,
            reason="lease",
            max_attempts=1,
            pricing=pricing,
            lost=True,
            silent_since=(run.attempt, run.last_heartbeat),
        )  # fmt: skip  (failed, not requeued: the next claim takes the next run)
        (row,) = attempt_rows(engine, run_id=run.id)
        rows[(launcher, heard)] = (row, now() - (started - 90))
    for (launcher, heard), (row, judged) in rows.items():
        assert row["outcome"] == "lost"
        if launcher == "local":  # held its GPU until the judgement
            assert row["seconds"] == pytest.approx(judged, abs=5)
        else:
            assert row["seconds"] == pytest.approx(heard or 0.0, abs=1e-6), (launcher, heard)
        assert row["cost_usd"] == pytest.approx(row["seconds"] / 3600 * row["gpus"] * price)
