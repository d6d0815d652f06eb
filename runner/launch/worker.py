"""`pax worker`: turn any machine into capacity. Claims queued runs from the service over HTTP,
trains each in a local run directory (GPU if present), and reports its exit; the trainer itself
streams metrics and heartbeats with the run's own token, as under the local launcher."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from runner.launch.base import run_dir_under, trainer_args, trainer_env


def run_worker(
    url: str,
    token: str,
    *,
    name: str | None = None,
    runs_root: Path = Path("var/worker-runs"),
    poll_s: float = 5.0,
    max_runs: int = 0,
    idle_exit_s: float = 0,
    log=lambda m: print(m, file=sys.stderr, flush=True),
) -> int:
    """Loop until max_runs are done (0 = forever) or the queue stayed empty idle_exit_s.
    `token` is the service's worker token (it may claim runs, nothing else)."""
    name = name or default_name()
    api = url.rstrip("/") + "/api/v1"
    headers = {"Authorization": f"Bearer {token}"}
    done, idle_since = 0, time.monotonic()
    with httpx.Client(base_url=api, headers=headers, timeout=60) as c:
        while not max_runs or done < max_runs:
            try:
                r = c.post("/claim", json={"worker": name})
            except httpx.HTTPError as e:
                log(f"worker {name}: service unreachable ({e}); retrying in {poll_s:.0f}s")
                time.sleep(poll_s)
                continue
            if r.status_code == 204:
                if idle_exit_s and time.monotonic() - idle_since > idle_exit_s:
                    break
                time.sleep(poll_s)
                continue
            if r.status_code != 200:
                log(f"worker {name}: claim refused ({r.status_code}: {r.text[:200]})")
                return 2
            claim = r.json()
            code = train_claimed(claim, url, runs_root, log)
            for _ in range(10):  # the service may be restarting: the exit must arrive
                try:
                    c.post(
                        f"/runs/{claim['run_id']}/exit",
                        json={"code": code},
                        headers={"Authorization": f"Bearer {claim['run_token']}"},
                    )
                    break
                except httpx.HTTPError:
                    time.sleep(poll_s)
            done += 1
            idle_since = time.monotonic()
    log(f"worker {name}: {done} runs done")
    return 0


def default_name() -> str:
    """host-pid, made a valid name (letters, digits, '_', '.', '-')."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()).strip("-.") or "worker"
    return f"{host[:80]}-{os.getpid()}"


def train_claimed(claim: dict, url: str, runs_root: Path, log, passthrough=()) -> int:
    run_dir = run_dir_under(runs_root, claim["run_id"], claim["name"])
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = run_dir / "spec.yaml"
    spec.write_text(yaml.safe_dump({"base": claim["config"]}))
    # the trainer sees its own run's token, never the worker's
    env = trainer_env(
        {
            "PAX_RUNNER_URL": url,
            "PAX_RUN_ID": str(claim["run_id"]),
            "PAX_RUN_TOKEN": claim["run_token"],
            "PAX_HEARTBEAT_S": str(claim["heartbeat_s"]),
        },
        passthrough,
    )
    log(f"worker: run {claim['run_id']} ({claim['name']}, attempt {claim['attempt']}) in {run_dir}")
    with open(run_dir / "train.log", "ab") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "pax.cli", *trainer_args(spec, run_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return proc.returncode
