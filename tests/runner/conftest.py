"""The service under test, two ways with one interface:

- `service`: the app in this process (FastAPI's TestClient) on a real ledger, its scheduler
  launching nothing (concurrency 0): the fast lane for API behaviour.
- `service_factory(...)`: a real `pax serve` (uvicorn on 127.0.0.1) in a subprocess, for what is
  about processes: launched trainers, workers, restarts, signals, the browser.

Both stand on `ledger`: a SQLite file by default. A module marked `both_backends` runs each of
its tests on SQLite and on PostgreSQL (a fresh database per test, copied from a migrated
template). PostgreSQL is PAX_TEST_DATABASE_URL (a server where the user may create databases),
else a scratch server this session starts from Debian's `postgresql` package; with neither, the
PostgreSQL half skips and says why.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from pax.client import Client, free_port
from pax.client import start_service as start_server
from runner.ledger.lifecycle import claim_queued
from tests.conftest import ROOT
from tests.helpers import tiny_raw, wait_until

ADMIN = "test-admin-token-0123456789"
API = "/api/v1"


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

    def pax_client(self, token: str | None = ADMIN) -> Client:
        """The product's own client (pax/client.py) on this service."""
        return Client(self.root or "http://testserver", token, http=self.http)

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

    def token_file(self, kind: str = "worker") -> Path:
        """A generated token's file: beside the SQLite ledger, or on PostgreSQL beside PAX_DB's
        default (var/pax.db in the service's folder)."""
        base = self.db if isinstance(self.db, Path) else self.cwd / "var" / "pax.db"
        return base.with_name(f"{base.name}.{kind}_token")

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


def ledger_env(db: Path | str) -> dict[str, str]:
    """The service's settings for a ledger: PAX_DB for a SQLite file, else PAX_DATABASE_URL."""
    from runner.ledger.db import sqlite_path

    if sqlite_path(db) is not None:
        return {"PAX_DB": str(db)}
    return {"PAX_DATABASE_URL": str(db)}


def start_service(
    cwd: Path, db: Path | str, *, concurrency: int = 0, port: int | None = None, **env: str
) -> Service:
    port = port or free_port()
    full_env = {
        "PYTHONPATH": str(ROOT),
        "PAX_ADMIN_TOKEN": ADMIN,
        **ledger_env(db),
        "PAX_PORT": str(port),
        "PAX_CONCURRENCY": str(concurrency),
        "PAX_RUNS_ROOT": str(cwd / "runs"),
        "PAX_HEARTBEAT_S": "0.5",
        "PAX_LEASE_S": "6",
        "PAX_TICK_S": "0.2",
        "PAX_STOP_GRACE_S": "3",
        **env,
    }
    proc = start_server(full_env, port=port, cwd=cwd, log=cwd / f"serve-{port}.log")
    url = f"http://127.0.0.1:{port}"
    return Service(url=url, proc=proc, db=db, cwd=cwd, env=full_env)


def backend_ids(db: Path | str, run_id: int | None = None) -> list[str]:
    """Every run's backend id (or run `run_id`'s) in a ledger (SQLite file or URL); [] when
    there is none yet."""
    import sqlalchemy

    from runner.ledger.db import make_engine, sqlite_path

    path = sqlite_path(db)
    if path is not None and not path.is_file():
        return []
    engine = make_engine(db)
    try:
        with engine.connect() as c:
            which = "" if run_id is None else f" AND id = {int(run_id)}"
            rows = c.execute(
                sqlalchemy.text("SELECT backend_id FROM runs WHERE backend_id IS NOT NULL" + which)
            ).all()
    except sqlalchemy.exc.SQLAlchemyError:
        return []
    finally:
        engine.dispose()
    return [str(r[0]) for r in rows]


def kill_trainers(db: Path | str) -> None:
    """Launched trainers run in their own sessions: end them after each test."""
    pids = [int(b) for b in backend_ids(db) if b.isdigit()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------- the ledger: SQLite or PostgreSQL

_databases = itertools.count()
PG_PREFIX = f"pax_t{os.getpid()}_"  # this session's databases


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """(server admin URL, template database) for PostgreSQL ledgers; skips with the reason when
    there is no server to use."""
    try:
        import psycopg  # noqa: F401 - the driver the PostgreSQL ledgers need
    except ImportError:
        pytest.skip("psycopg is not installed (pip install .[postgres])")
    from runner.ledger.db import upgrade
    from tests import pgserver

    server = None
    admin = os.environ.get("PAX_TEST_DATABASE_URL")
    if not admin:
        if pgserver.server_bin() is None:
            pytest.skip(
                "no PostgreSQL: neither PAX_TEST_DATABASE_URL nor Debian's postgresql package "
                "(apt-get install postgresql)"
            )
        server = pgserver.start(durable=False)
        admin = server.url
    template = f"{PG_PREFIX}tpl"
    upgrade(pgserver.create_database(admin, template))
    yield admin, template
    if server is not None:
        server.stop()
    else:
        pgserver.drop_databases(admin, PG_PREFIX)


def new_postgres_ledger(postgres, name: str | None = None, migrated: bool = True) -> str:
    """A fresh PostgreSQL ledger, migrated (a copy of the template) or empty: its URL."""
    from tests import pgserver

    admin, template = postgres
    name = f"{PG_PREFIX}{name or next(_databases)}"
    return pgserver.create_database(admin, name, template if migrated else None)


def pytest_generate_tests(metafunc):
    # a test marked sqlite_only is about processes (a worker's slots, its checkpoint store), not
    # the ledger: a second run on PostgreSQL would only add its minute to CI
    d = metafunc.definition
    if (
        "backend" in metafunc.fixturenames
        and d.get_closest_marker("both_backends")
        and not d.get_closest_marker("sqlite_only")
    ):
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def ledger(backend, tmp_path, request) -> Path | str:
    """This test's ledger: a SQLite file, or a PostgreSQL URL (see the module's docstring)."""
    if backend == "postgresql":
        return new_postgres_ledger(request.getfixturevalue("postgres"))
    return tmp_path / "var" / "pax.db"


@pytest.fixture
def service_factory(tmp_path, ledger):
    started: list[Service] = []

    def make(concurrency: int = 0, **env) -> Service:
        db = env.pop("db", ledger)
        db = db if "://" in str(db) else Path(db)
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


def in_process(
    tmp_path: Path, ledger: Path | str | None = None, **settings
) -> contextlib.AbstractContextManager[InProcess]:
    """The whole app (service and dashboard) in this process, on a real ledger (default: a
    SQLite file in tmp_path)."""
    from fastapi.testclient import TestClient

    from pax.app import build_app
    from runner.settings import Settings

    @contextlib.contextmanager
    def run():
        url = str(ledger) if ledger is not None and "://" in str(ledger) else None
        s = Settings(
            db=tmp_path / "var" / "pax.db",
            database_url=url,
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
            yield InProcess(app=app, http=http, db=url or s.db, cwd=tmp_path)

    return run()


@pytest.fixture
def service(tmp_path, ledger):
    with in_process(tmp_path, ledger) as svc:
        yield svc


@pytest.fixture
def spec(tokenized_dir) -> dict:
    """A tiny run's config on the test tokenizer (tests.helpers.tiny_raw)."""
    return tiny_raw(tokenized_dir.parent)


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
    from runner.ledger.db import make_engine

    engine = make_engine(db)
    try:
        for run, token in claim_queued(engine, limit=100, launcher="test"):
            if run.id == run_id:
                return token
    finally:
        engine.dispose()
    raise LookupError(run_id)


def serve_once(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pax.cli", "serve", "--port", "1"],  # never reaches listening
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PAX_ADMIN_TOKEN": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
