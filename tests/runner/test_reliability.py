"""Nothing lost, nothing doubled: real service, real trainer subprocesses, real signals."""

import os
import signal
import sqlite3
import threading
import time

import httpx
import pytest

from tests.runner.conftest import post_run, run_spec, series, start_service


def long_spec(tok_root, steps=120):
    return run_spec(
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
    t0 = time.time()
    while time.time() - t0 < timeout:
        pts = series(svc, run_id, "train/loss")
        if pts and pts[-1]["step"] >= step:
            return
        time.sleep(0.2)
    raise TimeoutError


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
    events = httpx.get(f"{svc.api}/runs/{run['id']}/events").json()
    reasons = [e["reason"] for e in events]
    assert any("crashed" in r and "requeued" in r for r in reasons), reasons
    log = (svc.cwd / done["run_dir"] / "train.log").read_text()
    assert "=== attempt 2 ===" in log
    metrics = httpx.get(f"{svc.api}/runs/{run['id']}").json()["result"]
    assert metrics["run"]["attempts"] == 2
    # cost: provisioned time of both attempts, at the T4 spot price
    from runner.launch.cost import Pricing

    wall = done["finished_at"] - t0
    assert 0 < done["gpu_hours"] * 3600 <= wall + 1
    assert done["cost_usd"] == pytest.approx(done["gpu_hours"] * Pricing().hourly("T4", True))


def test_lost_lease_requeues_and_the_next_attempt_resumes(service_factory, tokenized_dir):
    svc = service_factory(concurrency=1, PAX_LEASE_S="3")
    run = post_run(svc, long_spec(tokenized_dir.parent))
    wait_for_step(svc, run["id"], 15)
    pid = int(svc.run(run["id"])["backend_id"])
    os.killpg(pid, signal.SIGSTOP)  # alive but silent: only the lease can tell
    done = svc.wait_status(run["id"], ("succeeded", "failed"), timeout=240)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    events = httpx.get(f"{svc.api}/runs/{run['id']}/events").json()
    assert any(e["to_status"] == "lost" and "lease expired" in e["reason"] for e in events)
    assert_complete_history(svc, run["id"], 120)


def test_sigkilled_service_loses_nothing(service_factory, tokenized_dir, tmp_path):
    svc = service_factory(concurrency=1)
    first = post_run(svc, long_spec(tokenized_dir.parent, steps=1000))
    queued = post_run(svc, long_spec(tokenized_dir.parent, steps=10), name="waiting")
    wait_for_step(svc, first["id"], 10)
    svc.kill()  # SIGKILL: no shutdown hook runs
    pid = int(
        sqlite3.connect(svc.db)
        .execute("SELECT backend_id FROM runs WHERE id = ?", (first["id"],))
        .fetchone()[0]
    )
    time.sleep(1)
    os.kill(pid, 0)  # training goes on without the service
    outbox = tmp_path / "runs" / f"{first['id']:06d}-tiny" / "outbox.jsonl"
    size = outbox.stat().st_size
    time.sleep(1)
    assert outbox.stat().st_size > size  # and keeps buffering
    svc2 = start_service(tmp_path, svc.db, concurrency=1, port=int(svc.url.rsplit(":", 1)[1]))
    try:
        assert svc2.run(queued["id"])["status"] == "queued"  # still queued after the restart
        done = svc2.wait_status(first["id"], ("succeeded", "failed"), timeout=240)
        assert done["status"] == "succeeded" and done["attempt"] == 1
        assert_complete_history(svc2, first["id"], 1000)
        second = svc2.wait_status(queued["id"], ("succeeded", "failed"), timeout=240)
        assert second["status"] == "succeeded"
    finally:
        svc2.proc.terminate()
        svc2.proc.wait(timeout=20)


def test_concurrent_writers_and_readers(service, tokenized_dir):
    runs = [post_run(service, run_spec(tokenized_dir.parent)) for _ in range(8)]
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


def test_upgrading_an_old_ledger_keeps_its_data(tmp_path):
    from runner.ledger.db import current_revision, upgrade

    db = tmp_path / "old.db"
    upgrade(db, "0001")
    c = sqlite3.connect(db)
    c.execute(
        "INSERT INTO runs (id, name, spec_json, spec_hash, status, created_at, updated_at) "
        "VALUES (1, 'old', '{}', 'abc', 'succeeded', 1.0, 2.0)"
    )
    c.execute("INSERT INTO metric_points VALUES (1, 'train/loss', 5, 100, 3.25)")
    c.execute("INSERT INTO events (run_id, time, kind, reason) VALUES (1, 1.0, 'state', 'x')")
    c.commit()
    c.close()
    upgrade(db)
    assert current_revision(db) == "0004"
    c = sqlite3.connect(db)
    assert c.execute("SELECT name, status, gpu_hours, cost_usd FROM runs").fetchall() == [
        ("old", "succeeded", 0.0, 0.0)
    ]
    assert c.execute("SELECT value FROM metric_points").fetchall() == [(3.25,)]
    assert c.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)
    assert c.execute("SELECT COUNT(*) FROM results").fetchone() == (0,)


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
    assert json.loads(res.stdout.splitlines()[-1])["revision"] == "0004"
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
