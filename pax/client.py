"""The one client of the service's API, for everything that talks to it from outside: the CLI,
the demo, workers, `pax sky`, benches, scripts and tests. Typed methods over /api/v1, the token
from the caller, the environment or the file beside the ledger, and errors whose message names
the fix. `start_service` starts `pax serve` in a child process and waits until it answers.

(The trainer is the exception: it sits a floor below and reaches the service through its own
reporter, trainer/reporting/http.py, which must keep training when the service is away.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

API = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8000"


class ServiceError(RuntimeError):
    """The service answered with a refusal (`status`), its detail and what to do."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class Unreachable(ServiceError):
    """No answer at all: the service is down, restarting, or at another address."""


def admin_token(token: str | None = None, db: Path | str | None = None) -> str | None:
    """The admin token: given, else PAX_ADMIN_TOKEN, else the file the service keeps beside
    its ledger (`db`, default PAX_DB or var/pax.db); None when there is none."""
    if token:
        return token
    if os.environ.get("PAX_ADMIN_TOKEN"):
        return os.environ["PAX_ADMIN_TOKEN"]
    from runner.auth import token_file

    path = token_file(db or os.environ.get("PAX_DB") or "var/pax.db")
    return path.read_text().strip() if path.is_file() else None


class Client:
    """The service at `url`, calling with `token` (the admin's, or a worker's). `http`: an
    httpx client to call through instead (a test's in-process app)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 120,
        http: httpx.Client | None = None,
    ):
        self.url = url.rstrip("/")
        self.token = token
        self.http = http or httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ the wire

    def request(
        self, method: str, path: str, *, token: str | None = None, ok=(200, 201), **kw
    ) -> httpx.Response:
        """One call; a refusal or no answer is a ServiceError naming the fix."""
        token = token or self.token
        headers = dict(kw.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            r = self.http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as e:
            raise Unreachable(
                f"cannot reach the service at {self.url} ({e.__class__.__name__}: {e}); start "
                "it with `pax serve`, or pass --url (PAX_URL) for one elsewhere"
            ) from None
        if r.status_code not in ok:
            raise ServiceError(_refusal(r, self.url, bool(token)), r.status_code)
        return r

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", API + path, **kw).json()

    def post(self, path: str, **kw) -> Any:
        return self.request("POST", API + path, **kw).json()

    # ------------------------------------------------------------ the service

    def health(self) -> dict:
        return self.request("GET", "/healthz").json()

    def wait_ready(
        self,
        *,
        timeout_s: float = 60,
        proc: subprocess.Popen | None = None,
        log: Path | None = None,
    ) -> dict:
        """Poll /healthz until it answers (its answer), or fail: the process `proc` exited
        (with the tail of its `log`), or `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"pax serve exited ({proc.returncode}){_tail(log)}")
            try:
                return self.health()
            except ServiceError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"pax serve did not answer {self.url}/healthz in {timeout_s:.0f}s"
                        + _tail(log)
                    ) from None
                time.sleep(0.1)

    # ------------------------------------------------------------ runs and sweeps

    def submit_plan(self, text: bytes | str, *, launcher: str | None = None) -> dict:
        """A plan or a study sweep file (YAML), queued as a sweep."""
        return self.post(
            "/sweeps",
            params={"launcher": launcher} if launcher else None,
            content=text.encode() if isinstance(text, str) else text,
            headers={"Content-Type": "application/yaml"},
            ok=(201,),
        )

    def sweep(self, sweep_id: int) -> dict:
        return self.get(f"/sweeps/{sweep_id}")

    def resume_sweep(self, sweep_id: int) -> dict:
        return self.post(f"/sweeps/{sweep_id}/resume")

    def submit_run(self, config: dict, *, launcher: str | None = None, **fields) -> dict:
        body = {"config": config, **fields}
        if launcher:
            body["launcher"] = launcher
        return self.post("/runs", json=body, ok=(201,))

    def run(self, run_id: int) -> dict:
        return self.get(f"/runs/{run_id}")

    # ------------------------------------------------------------ workers

    def claim(self, body: dict) -> dict | None:
        """The next queued run for a worker (with the worker token), or None when the queue
        has nothing for it."""
        r = self.request("POST", API + "/claim", json=body, ok=(200, 204))
        return None if r.status_code == 204 else r.json()

    def report_exit(self, run_id: int, code: int, *, run_token: str) -> dict:
        """How a run's trainer exited, with the run's own token."""
        return self.post(f"/runs/{run_id}/exit", json={"code": int(code)}, token=run_token)

    # ------------------------------------------------------------ SkyPilot

    def sky_options(self) -> dict:
        return self.get("/sky")

    def cloud_up(self, body: dict) -> dict:
        return self.post("/cloud/up", json=body)

    def cloud_down(self) -> dict:
        return self.post("/cloud/down")

    def cloud_status(self) -> dict:
        return self.get("/cloud")

    def cloud_forecast(self, text: bytes, **params) -> dict:
        """A plan (YAML) priced on N workers x M slots: POST /cloud/forecast."""
        return self.post(
            "/cloud/forecast",
            params=params,
            content=text,
            headers={"Content-Type": "application/yaml"},
        )

    def sky_forecast(self, *, tokens: int, jobs: int) -> dict:
        return self.post("/sky/forecast", json={"tokens": tokens, "jobs": jobs})


def _refusal(r: httpx.Response, url: str, had_token: bool) -> str:
    try:
        detail = r.json().get("detail", r.text)
    except ValueError:
        detail = r.text[:300]
    if r.status_code == 401 or (r.status_code == 403 and not had_token):
        fix = (
            "; pass --token, or set PAX_ADMIN_TOKEN (the service keeps it in <db>.admin_token "
            "beside its ledger)"
        )
    elif r.status_code == 403:
        fix = "; this token may not do this: use the admin token (PAX_ADMIN_TOKEN)"
    elif r.status_code == 400 and "host" in str(detail).lower():
        fix = f"; the service does not accept the host of {url}: add it to PAX_ALLOWED_HOSTS"
    else:
        fix = ""
    return f"{r.status_code}: {detail}{fix}"


def _tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not Path(log).is_file():
        return ""
    text = Path(log).read_text(errors="replace").splitlines()[-lines:]
    return f"; the end of {log}:\n" + "\n".join(text)


def free_port() -> int:
    """A free TCP port on 127.0.0.1, for a service started here (the tests', benches' and
    scripts' one helper)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(
    env: dict[str, str],
    *,
    port: int,
    cwd: Path | str | None = None,
    log: Path | None = None,
    timeout_s: float = 60,
) -> subprocess.Popen:
    """`pax serve` in a child process with this environment and `env` (its PAX_* settings) on
    127.0.0.1:`port`, once it answers /healthz. Its output goes to `log` (else nowhere)."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - the child's
    proc = subprocess.Popen(
        [sys.executable, "-m", "pax.cli", "serve"],
        env={**os.environ, **env, "PAX_PORT": str(port)},
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    if log is not None:
        out.close()  # the child holds its own copy
    try:
        with Client(f"http://127.0.0.1:{port}", timeout=2) as c:
            c.wait_ready(timeout_s=timeout_s, proc=proc, log=log)
    except RuntimeError:
        proc.terminate()
        raise
    return proc
