"""Several `pax serve` processes on one PostgreSQL ledger: claims are never doubled, also when
a server is SIGKILLed mid-claim, and exactly one server runs the scheduler, a new one within a
lease after the leader dies."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
import time

import httpx
import pytest

from runner.ledger.runs import create_run
from tests.helpers import tiny_raw, wait_until
from tests.runner.conftest import ADMIN, API, new_postgres_ledger, start_service

SERVERS, THREADS, RUNS = 4, 8, 240


def queue_runs(url: str, n: int, tok_root) -> None:
    from runner.ledger.db import make_engine
    from trainer.config import validate

    engine = make_engine(url)
    cfg = validate(tiny_raw(tok_root))
    try:
        for _ in range(n):
            create_run(engine, cfg=cfg)
    finally:
        engine.dispose()


def ledger_runs(url: str) -> list[tuple[int, str, int]]:
    from sqlalchemy import text

    from runner.ledger.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text("SELECT id, status, attempt FROM runs"))]
    finally:
        engine.dispose()


def claim_until_empty(base: str, name: str, got: list, lock: threading.Lock) -> str:
    """POST /claim until the queue is empty (204) or this server is gone."""
    with httpx.Client(timeout=30) as http:
        while True:
            try:
                r = http.post(
                    f"{base}{API}/claim",
                    json={"worker": name},
                    headers={"Authorization": f"Bearer {ADMIN}"},
                )
            except httpx.TransportError:
                return "server gone"
            if r.status_code == 204:
                return "empty"
            assert r.status_code == 200, r.text
            with lock:
                got.append(r.json()["run_id"])


@pytest.mark.slow
def test_four_servers_never_double_claim_even_when_one_is_killed(postgres, tokenized_dir, tmp_path):
    url = new_postgres_ledger(postgres)
    queue_runs(url, RUNS, tokenized_dir.parent)
    servers = [start_service(tmp_path, url, PAX_TICK_S="0.5") for _ in range(SERVERS)]
    got: list[int] = []
    lock = threading.Lock()
    try:
        with cf.ThreadPoolExecutor(SERVERS * THREADS) as pool:
            futures = [
                pool.submit(claim_until_empty, s.url, f"s{i}t{t}", got, lock)
                for i, s in enumerate(servers)
                for t in range(THREADS)
            ]
            # the first server dies mid-claim: while its 8 threads are claiming
            wait_until(lambda: len(got) >= RUNS // 4, 120, "a quarter of the runs claimed")
            servers[0].kill()
            ends = [f.result(timeout=300) for f in futures]
    finally:
        for s in servers:
            with contextlib.suppress(Exception):
                s.proc.kill()
                s.proc.wait(timeout=10)
    assert ends[:THREADS].count("server gone") >= 1, ends  # the kill landed mid-claim
    assert len(got) == len(set(got)), "a run was handed out twice"
    rows = ledger_runs(url)
    assert all(attempt <= 1 for _, _, attempt in rows)  # nobody claimed a run a second time
    assert not [r for r in rows if r[1] == "queued"]  # the killed server's claims rolled back
    # every claim answered is in the ledger; at most one per killed thread went unanswered
    # (the leader's scheduler marks a worker's claimed run running: workers are judged by lease)
    claimed = {rid for rid, status, _ in rows if status in ("launching", "running")}
    assert set(got) <= claimed and len(claimed - set(got)) <= THREADS


def role(svc) -> str | None:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(svc.url + "/healthz", timeout=5).json()["scheduler"]
    return None


@pytest.mark.slow
def test_one_scheduler_leader_and_a_new_one_within_a_lease(postgres, tmp_path):
    lease = 15.0
    url = new_postgres_ledger(postgres)
    servers = [
        start_service(tmp_path, url, PAX_LEASE_S=str(lease), PAX_TICK_S="0.2") for _ in range(3)
    ]
    try:
        roles = wait_until(
            lambda: (r := [role(s) for s in servers]).count("leader") == 1 and r,
            60,
            "one leader among three servers",
        )
        assert roles.count("standby") == 2, roles
        leader = servers[roles.index("leader")]
        rest = [s for s in servers if s is not leader]
        leader.kill()
        t0 = time.monotonic()
        wait_until(
            lambda: [role(s) for s in rest].count("leader") == 1,
            lease,
            "a standby taking the scheduler over within one lease",
        )
        took = time.monotonic() - t0
        assert took < lease
        assert [role(s) for s in rest].count("leader") == 1  # still exactly one
    finally:
        for s in servers:
            with contextlib.suppress(Exception):
                s.proc.kill()
                s.proc.wait(timeout=10)
