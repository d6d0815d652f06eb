"""The service under test, two ways with one interface:

- `service`: the app in this process (FastAPI's TestClient) on a real SQLite file, its scheduler
  launching nothing (concurrency 0): the fast lane for API behaviour.
- `service_factory(...)`: a real `pax serve` (uvicorn on 127.0.0.1) in a subprocess, for what is
  about processes: launched trainers, workers, restarts, signals, the browser.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.helpers import wait_until

ADMIN = "test-admin-token-0123456789"
API = "/api/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scoped:
    """Requests under one base path with one token (a context manager, like httpx.Client)."""

    def __init__(self, http, base: str, token: str | None):
        self.http, self.base = http, base
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        headers = {**self.headers, **(kw.pop("headers", None) or {})}
        return self.http.request(method, self.base + path, headers=headers, **kw)

    def get(self, path: str, **kw) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.request("POST", path, **kw)


class ServiceApi:
    """What tests do with a service, whichever kind it is."""

    http: httpx.Client
    root: str  # "" in process, http://127.0.0.1:port for a real one
    db: Path
    cwd: Path

    @property
    def api(self) -> str:
        return self.root + API

    def client(self, token: str | None = ADMIN) -> Scoped:
        return Scoped(self.http, self.api, token)

    def get(self, path: str, **kw) -> httpx.Response:
        """GET an API path (/runs, /sweeps/1, ...)."""
        return self.http.get(self.api + path, **kw)

    def post(self, path: str, token: str | None = ADMIN, **kw) -> httpx.Response:
        return self.client(token).post(path, **kw)

    def page(self, path: str, **kw) -> httpx.Response:
        """GET a path of the site (/, /runs/1, /healthz, /docs)."""
        return self.http.get(self.root + path, **kw)

    def run(self, run_id: int) -> dict:
        return self.get(f"/runs/{run_id}").json()

    def wait_status(self, run_id: int, statuses, timeout: float = 180) -> dict:
        return wait_until(
            lambda: (r := self.run(run_id))["status"] in statuses and r,
            timeout,
            f"run {run_id} reaching {statuses}",
            every=0.2,
        )


@dataclass
class InProcess(ServiceApi):
    app: object
    http: httpx.Client
    db: Path
    cwd: Path
    root: str = ""


@dataclass
class Service(ServiceApi):
    url: str
    proc: subprocess.Popen
    db: Path
    cwd: Path
    env: dict
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def root(self) -> str:
        return self.url

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


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

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError((cwd / f"serve-{port}.log").read_text())
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url + "/healthz", timeout=2).status_code == 200
        return False

    wait_until(up, 60, "pax serve answering /healthz")
    return Service(url=url, proc=proc, db=db, cwd=cwd, env=full_env)


def kill_trainers(db: Path) -> None:
    """Launched trainers run in their own sessions: end them after each test."""
    if not db.is_file():
        return
    with contextlib.closing(sqlite3.connect(db)) as c:
        try:
            pids = [
                int(r[0])
                for r in c.execute("SELECT backend_id FROM runs WHERE backend_id IS NOT NULL")
                if str(r[0]).isdigit()
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
        svc.http.close()
        kill_trainers(svc.db)


def in_process(tmp_path: Path, **settings) -> contextlib.AbstractContextManager[InProcess]:
    """The whole app (service and dashboard) in this process on a real SQLite file."""
    from fastapi.testclient import TestClient

    from pax.cli import build_app
    from runner.settings import Settings

    @contextlib.contextmanager
    def run():
        s = Settings(
            db=tmp_path / "var" / "pax.db",
            admin_token=ADMIN,
            concurrency=0,
            runs_root=tmp_path / "runs",
            reports_root=tmp_path / "reports",
            tick_s=0.2,
            allowed_hosts=["testserver"],  # TestClient's Host
            **settings,
        )
        app = build_app(s)
        with TestClient(app, raise_server_exceptions=False) as http:
            yield InProcess(app=app, http=http, db=s.db, cwd=tmp_path)

    return run()


@pytest.fixture
def service(tmp_path):
    with in_process(tmp_path) as svc:
        yield svc


def run_spec(tok_root: Path, **sections) -> dict:
    from tests.conftest import tiny_raw

    return tiny_raw(tok_root, **sections)


def post_run(svc: ServiceApi, spec: dict, **extra) -> dict:
    r = svc.post("/runs", json={"config": spec, **extra} if extra else spec)
    assert r.status_code == 201, r.text
    return r.json()


def series(svc: ServiceApi, run_id: int, name: str) -> list[dict]:
    r = svc.get(f"/runs/{run_id}/metrics", params={"name": name, "max_points": 10_000})
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
