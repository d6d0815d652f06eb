"""A launched trainer's environment: never the admin's or the worker's token."""

import os
import subprocess
import sys

import psutil
import pytest

from tests.conftest import ROOT
from tests.helpers import environ, tiny_raw, wait_until
from tests.runner.conftest import ADMIN, post_run


@pytest.mark.slow
def test_a_launched_trainer_never_sees_the_admin_token(service_factory, tokenized_dir):
    svc = service_factory(concurrency=1)
    run = post_run(svc, tiny_raw(tokenized_dir.parent, max_tokens=400 * 8 * 64))
    pid = int(svc.wait_status(run["id"], ("running",), timeout=60)["backend_id"])
    env = environ(pid)
    assert env["PAX_RUN_ID"] == str(run["id"]) and env["PAX_RUN_TOKEN"]
    assert "PAX_ADMIN_TOKEN" not in env and ADMIN not in "".join(env.values())
    assert "PAX_WORKER_TOKEN" not in env


@pytest.mark.slow
def test_a_workers_trainer_never_sees_the_workers_token(service_factory, tokenized_dir, tmp_path):
    svc = service_factory()
    worker_token = (svc.db.with_name(svc.db.name + ".worker_token")).read_text().strip()
    run = post_run(svc, tiny_raw(tokenized_dir.parent, max_tokens=400 * 8 * 64))
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pax.cli",
            "worker",
            "--runner-url",
            svc.url,
            "--max-runs",
            "1",
            "--poll-s",
            "0.2",
            "--runs-root",
            str(tmp_path / "w"),
        ],
        cwd=tmp_path,
        # a careless deployment hands the worker the admin token too: it must not travel on
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PAX_WORKER_TOKEN": worker_token,
            "PAX_ADMIN_TOKEN": ADMIN,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        trainer = wait_until(
            lambda: next(iter(psutil.Process(worker.pid).children()), None), 60, "the trainer"
        )
        env = wait_until(
            lambda: environ(trainer.pid).get("PAX_RUN_TOKEN") and environ(trainer.pid),
            30,
            "the trainer's environment",
        )
        assert env["PAX_RUN_ID"] == str(run["id"])
        assert worker_token not in "".join(env.values()) and ADMIN not in "".join(env.values())
        assert worker_token not in " ".join(psutil.Process(worker.pid).cmdline())
    finally:
        worker.kill()
        for child in psutil.Process().children(recursive=True):
            if child.pid != svc.proc.pid:
                child.kill()
