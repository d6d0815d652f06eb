"""Nothing lost, nothing doubled: real service, real trainer subprocesses, real signals."""

import json
import os
import signal
import sqlite3
import threading

import httpx
import pytest

from runner.ledger.lifecycle import requeue_or_fail
from tests.helpers import HEAD_REVISION, tiny_raw, wait_until
from tests.runner.conftest import backend_ids, post_run, series, start_service

pytestmark = pytest.mark.both_backends  # SQLite and PostgreSQL (tests/runner/conftest.py)


def long_spec(tok_root, steps=120):
    return tiny_raw(
        tok_root,
        max_tokens=steps * 8 * 64,
        checkpoint={"every_steps": 10, "every_minutes": 0, "keep_latest_k": 2},
        eval={"every_tokens": 20 * 8 * 64, "max_tokens": 1024},
    )


def assert_complete_history(svc, run_id, steps):
    loss = series(svc, run_id, "train/loss")
    assert [p["step"] for p in loss] == list(range(1, steps + 1))  # no gap, no duplicate
    dev = series(svc, run_id, "dev/token_ppl")
    assert [p["step"] for p in dev] == list(range(20, steps + 1, 20))


def wait_for_step(svc, run_id, step, timeout=120):
    def reached():
        pts = series(svc, run_id, "train/loss")
        return pts and pts[-1]["step"] >= step

    wait_until(reached, timeout, f"run {run_id} reaching step {step}", every=0.2)


@pytest.mark.slow
def test_sigkilled_trainer_is_relaunched_and_resumes(service_factory, tokenized_dir):
    """A preemption simulation: the launcher's process dies, the run resumes as a new attempt,
    and both attempts are charged."""
    svc = service_factory(concurrency=1, PAX_ACCELERATOR="T4", PAX_SPOT="true")
    run = post_run(svc, long_spec(tokenized_dir.parent))
    wait_for_step(svc, run["id"], 25)
    first = svc.run(run["id"])
    pid = int(first["backend_id"])
    os.killpg(pid, signal.SIGKILL)
    svc.wait_status(run["id"], ("queued", "launching", "running", "succeeded"), timeout=60)
    t0 = first["started_at"]
    done = svc.wait_status(run["id"], ("succeeded", "failed"), timeout=240)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    assert_complete_history(svc, run["id"], 120)
    events = svc.get(f"/runs/{run['id']}/events").json()
    reasons = [e["reason"] for e in events]
    assert any("crashed" in r and "requeued" in r for r in reasons), reasons
    log = (svc.cwd / done["run_dir"] / "train.log").read_text()
    assert "=== attempt 2 ===" in log
    metrics = svc.get(f"/runs/{run['id']}").json()["result"]
    assert metrics["run"]["attempts"] == 2
    # cost: provisioned time of both attempts, at the T4 spot price
    from runner.cost import Pricing

    wall = done["finished_at"] - t0
    assert 0 < done["gpu_hours"] * 3600 <= wall + 1
    assert done["cost_usd"] == pytest.approx(done["gpu_hours"] * Pricing().hourly("T4", True))


@pytest.mark.slow
def test_lost_lease_requeues_and_the_next_attempt_resumes(service_factory, tokenized_dir):
    svc = service_factory(concurrency=1, PAX_LEASE_S="6")  # a loaded CI box may lag 3 s
    run = post_run(svc, long_spec(tokenized_dir.parent))
    wait_for_step(svc, run["id"], 15)
    pid = int(svc.run(run["id"])["backend_id"])
    os.killpg(pid, signal.SIGSTOP)  # alive but silent: only the lease can tell
    done = svc.wait_status(run["id"], ("succeeded", "failed"), timeout=240)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    events = svc.get(f"/runs/{run['id']}/events").json()
    assert any(e["to_status"] == "lost" and "lease expired" in e["reason"] for e in events)
    assert_complete_history(svc, run["id"], 120)


@pytest.mark.slow
def test_sigkilled_service_loses_nothing(service_factory, tokenized_dir, tmp_path):
    svc = service_factory(concurrency=1)
    first = post_run(svc, long_spec(tokenized_dir.parent, steps=600))
    queued = post_run(svc, long_spec(tokenized_dir.parent, steps=10), name="waiting")
    wait_for_step(svc, first["id"], 10)
    svc.kill()  # SIGKILL: no shutdown hook runs
    pid = int(backend_ids(svc.db, first["id"])[0])
    # training goes on without the service, and keeps buffering its points
    outbox = tmp_path / "runs" / f"{first['id']:06d}-tiny" / "outbox.jsonl"
    size = outbox.stat().st_size
    wait_until(lambda: outbox.stat().st_size > size, 60, "the trainer buffering more points")
    os.kill(pid, 0)
    svc2 = start_service(tmp_path, svc.db, concurrency=1, port=int(svc.url.rsplit(":", 1)[1]))
    try:
        assert svc2.run(queued["id"])["status"] == "queued"  # still queued after the restart
        done = svc2.wait_status(first["id"], ("succeeded", "failed"), timeout=240)
        assert done["status"] == "succeeded" and done["attempt"] == 1
        assert_complete_history(svc2, first["id"], 600)
        second = svc2.wait_status(queued["id"], ("succeeded", "failed"), timeout=240)
        assert second["status"] == "succeeded"
    finally:
        svc2.proc.terminate()
        svc2.proc.wait(timeout=20)


@pytest.mark.slow
def test_concurrent_writers_and_readers(service_factory, tokenized_dir):
    """Many clients of a real server at once: every write lands, no "database is locked"."""
    service = service_factory()
    runs = [post_run(service, tiny_raw(tokenized_dir.parent)) for _ in range(8)]
    errors, done = [], threading.Event()

    def writer(run_id):
        with service.client() as c:
            for i in range(60):
                pts = [
                    {"step": i * 10 + j, "tokens": i, "name": "train/loss", "value": 1.0}
                    for j in range(10)
                ]
                r = c.post(f"/runs/{run_id}/metrics", json={"points": pts})
                if r.status_code != 200:
                    errors.append(r.text)

    def reader():
        with httpx.Client(base_url=service.api, timeout=30) as c:
            while not done.is_set():
                r = c.get("/runs", params={"limit": 100})
                if r.status_code != 200:
                    errors.append(r.text)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(r["id"],)) for r in runs]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert errors == []
    assert (
        "database is locked"
        not in (service.cwd / next(p.name for p in service.cwd.glob("serve-*.log"))).read_text()
    )
    for r in runs:
        assert len(series(service, r["id"], "train/loss")) == 600


def test_pax_db_upgrade_command(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    res = subprocess.run(
        [sys.executable, "-m", "pax.cli", "db", "upgrade", "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1])["revision"] == HEAD_REVISION
    mode = sqlite3.connect(tmp_path / "x.db").execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)


@pytest.mark.parametrize("pragma,value", [("synchronous", 2), ("foreign_keys", 1)])
def test_connection_pragmas(tmp_path, pragma, value):
    from runner.ledger.db import make_engine

    engine = make_engine(tmp_path / "p.db")
    with engine.connect() as conn:
        got = conn.exec_driver_sql(f"PRAGMA {pragma}").scalar()
    engine.dispose()
    assert got == value  # synchronous=FULL is 2


@pytest.mark.slow
def test_a_trainer_whose_token_is_revoked_stops_instead_of_training_unheard(
    service_factory, tokenized_dir, tmp_path
):
    """The ledger moved on (its lease expired while it was unheard, so the run was requeued and
    its token revoked): the trainer checkpoints and exits 75, leaving the run to the next
    attempt, instead of training on alone."""
    import subprocess
    import sys

    from runner.ledger.db import make_engine
    from tests.conftest import ROOT, write_config
    from tests.runner.conftest import claim_token

    svc = service_factory()
    spec = long_spec(tokenized_dir.parent, steps=3000)
    run = post_run(svc, spec)
    token = claim_token(svc.db, run["id"])
    run_dir = tmp_path / "trainer"
    config = write_config(tmp_path / "spec.yaml", spec)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PAX_RUNNER_URL": svc.url,
        "PAX_RUN_ID": str(run["id"]),
        "PAX_RUN_TOKEN": token,
        "PAX_HEARTBEAT_S": "0.5",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pax.cli",
            "train",
            "--config",
            str(config),
            "--run-dir",
            str(run_dir),
            "--no-progress",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_step(svc, run["id"], 10)
        engine = make_engine(svc.db)
        requeue_or_fail(
            engine, run_id=run["id"], reason="lease expired (test)", max_attempts=3, pricing=None
        )
        engine.dispose()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 75, err[-2000:]
    end = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert end["event"] == "end" and end["status"] == "preempted" and "revoked" in end["reason"]
    assert not (run_dir / "metrics.json").exists()
    assert list((run_dir / "checkpoints").glob("step_*.json"))  # the next attempt resumes here
