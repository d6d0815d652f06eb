"""A real `pax serve` (uvicorn on 127.0.0.1, a real SQLite file) in a subprocess per test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

ADMIN = "test-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    url: str
    proc: subprocess.Popen
    db: Path
    cwd: Path
    env: dict

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def client(self, token: str | None = ADMIN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.api, headers=headers, timeout=30)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def run(self, run_id: int) -> dict:
        return httpx.get(f"{self.api}/runs/{run_id}", timeout=30).json()

    def wait_status(self, run_id: int, statuses, timeout: float = 180) -> dict:
        t0 = time.time()
        while time.time() - t0 < timeout:
            r = self.run(run_id)
            if r["status"] in statuses:
                return r
            time.sleep(0.2)
        raise TimeoutError(f"run {run_id} still {r['status']} after {timeout}s")


def start_service(
    cwd: Path, db: Path, *, concurrency: int = 0, port: int | None = None, **env: str
) -> Service:
    port = port or free_port()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PAX_ADMIN_TOKEN": ADMIN,
        "PAX_DB": str(db),
        "PAX_PORT": str(port),
        "PAX_CONCURRENCY": str(concurrency),
        "PAX_RUNS_ROOT": str(cwd / "runs"),
        "PAX_HEARTBEAT_S": "0.5",
        "PAX_LEASE_S": "6",
        "PAX_TICK_S": "0.2",
        "PAX_STOP_GRACE_S": "3",
        **env,
    }
    log = open(cwd / f"serve-{port}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "pax.cli", "serve"],
        cwd=cwd,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < 60:
        if proc.poll() is not None:
            raise RuntimeError((cwd / f"serve-{port}.log").read_text())
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return Service(url, proc, db, cwd, full_env)
        time.sleep(0.1)
    raise TimeoutError("pax serve did not come up")


def kill_trainers(db: Path) -> None:
    """Launched trainers run in their own sessions: end them after each test."""
    if not db.is_file():
        return
    with contextlib.closing(sqlite3.connect(db)) as c:
        try:
            pids = [
                int(r[0])
                for r in c.execute("SELECT backend_id FROM runs WHERE backend_id IS NOT NULL")
            ]
        except sqlite3.Error:
            return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def service_factory(tmp_path):
    started: list[Service] = []

    def make(concurrency: int = 0, **env) -> Service:
        db = Path(env.pop("db", tmp_path / "var" / "pax.db"))
        svc = start_service(tmp_path, db, concurrency=concurrency, **env)
        started.append(svc)
        return svc

    yield make
    for svc in started:
        if svc.proc.poll() is None:
            svc.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                svc.proc.wait(timeout=10)
            if svc.proc.poll() is None:
                svc.kill()
        kill_trainers(svc.db)


@pytest.fixture
def service(service_factory) -> Service:
    return service_factory(concurrency=0)


def run_spec(tok_root: Path, **sections) -> dict:
    from tests.conftest import tiny_raw

    return tiny_raw(tok_root, **sections)


def post_run(svc: Service, spec: dict, **extra) -> dict:
    with svc.client() as c:
        r = c.post("/runs", json={"config": spec, **extra} if extra else spec)
    assert r.status_code == 201, r.text
    return r.json()


def series(svc: Service, run_id: int, name: str) -> list[dict]:
    r = httpx.get(
        f"{svc.api}/runs/{run_id}/metrics", params={"name": name, "max_points": 10_000}, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()["points"]


def claim_token(db: Path, run_id: int) -> str:
    """A run token as a launcher would get it (the claim goes through the ledger's own code)."""
    from runner.ledger import crud
    from runner.ledger.db import make_engine

    engine = make_engine(db)
    try:
        for run, token in crud.claim_queued(engine, limit=100, launcher="test"):
            if run.id == run_id:
                return token
    finally:
        engine.dispose()
    raise LookupError(run_id)


def dumps(x) -> str:
    return json.dumps(x)
