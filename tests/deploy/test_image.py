"""The image, built and run for real (issue 26): `pax db upgrade` then `pax serve` in a container
with a volume, `pax worker` in a second one holding only the worker token, a tiny run trained
in the worker's container with its metrics in the ledger; every process as uid 10001, no token
but the run's own in a trainer's environment, and SIGTERM to the worker leaving a checkpoint and
a requeued run. Then the Docker launcher, with the same image, from a service on the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pax.client import Client, ServiceError, free_port
from tests.deploy.conftest import IMAGE
from tests.helpers import tiny_raw, wait_until

pytestmark = pytest.mark.slow
ADMIN = "deploy-admin-token-0123456789"
WORKER = "deploy-worker-token-9876543210"


def ready(url: str, token: str = ADMIN, timeout: float = 180) -> Client:
    """A client of the service at `url`, once it answers /healthz."""
    client = Client(url, token, timeout=30)

    def up():
        try:
            return client.health()
        except ServiceError:
            return None

    wait_until(up, timeout, f"the service at {url}", every=1)
    return client


def status(client: Client, run_id: int) -> dict:
    return client.run(run_id)


def test_the_image_serves_and_a_worker_container_trains(containers, image, shared_data):
    net = containers.network()
    ledger, worker_home = containers.volume(), containers.volume()
    svc_name, port = containers.unique("svc"), free_port()
    containers.run(
        svc_name, "--init", "--network", net, "-p", f"127.0.0.1:{port}:8000",
        "-e", f"PAX_ADMIN_TOKEN={ADMIN}", "-e", f"PAX_WORKER_TOKEN={WORKER}",
        "-e", "PAX_CONCURRENCY=0",
        "-e", f'PAX_ALLOWED_HOSTS=["{svc_name}", "localhost", "127.0.0.1"]',
        "-v", f"{ledger}:/var/lib/pax", IMAGE, "serve",
    )  # fmt: skip
    client = ready(f"http://127.0.0.1:{port}")
    worker = containers.unique("worker")
    containers.run(
        worker, "--init", "--network", net, "-e", f"PAX_WORKER_TOKEN={WORKER}",
        "-v", f"{worker_home}:/var/lib/pax", "-v", f"{shared_data}:/data:ro",
        IMAGE, "worker", "--runner-url", f"http://{svc_name}:8000", "--poll-s", "0.5",
    )  # fmt: skip
    # 1) a tiny run, trained in the worker's container
    cfg = tiny_raw(Path("/data"), name="tiny")  # the data as the worker's container sees it
    first = client.submit_run(cfg, launcher="worker")["id"]
    done = wait_until(
        lambda: (r := status(client, first))["status"] in ("succeeded", "failed") and r,
        300,
        "the worker's container training the first run",
        every=1,
    )
    assert done["status"] == "succeeded", done["exit_reason"]
    assert client.get(f"/runs/{first}/metrics", params={"name": "train/loss"})["total"] > 0
    assert client.run(first)["result"]["run"]["status"] == "succeeded"  # the result is served
    # 2) a long run: who runs what, and what a trainer sees
    long = client.submit_run({**cfg, "name": "long", "max_tokens": 400_000}, launcher="worker")
    wait_until(lambda: status(client, long["id"])["tokens_seen"] > 0, 180, "the long run training")
    procs = containers.procs(worker)
    trainer = next(p for p in procs if " train " in f" {p['cmd']} " and "--run-dir" in p["cmd"])
    assert {p["uid"] for p in procs} == {10001}, procs
    assert {p["uid"] for p in containers.procs(svc_name)} == {10001}
    environ = containers(
        "exec", worker, "sh", "-c", f"tr '\\0' '\\n' < /proc/{trainer['pid']}/environ"
    ).stdout
    assert ADMIN not in environ and WORKER not in environ and "PAX_RUN_TOKEN=" in environ
    # 3) SIGTERM to the worker (docker stop through its init): a checkpoint, a requeued run
    containers("kill", "--signal", "TERM", worker)
    containers("wait", worker, timeout=180)
    back = wait_until(
        lambda: (r := status(client, long["id"]))["status"] == "queued" and r,
        120,
        "the long run requeued",
        every=1,
    )
    assert back["attempt"] == 1
    attempts = client.get(f"/runs/{long['id']}/attempts")
    assert attempts[0]["outcome"] == "preempted"
    left = containers(
        "run", "--rm", "-v", f"{worker_home}:/w", IMAGE,
        "sh", "-c", "ls /w/var/worker-runs/*-long/checkpoints/",
    ).stdout  # fmt: skip
    assert any(n.startswith("step_") and n.endswith(".json") for n in left.split()), left


def test_the_docker_launcher_starts_trainers_the_service_hears(
    containers, image, shared_data, tmp_path
):
    """The service on this host, its runs in containers of the image (with this machine's
    engine): the trainer posts to the service and its run folder is written as its owner."""
    from pax.client import start_service

    port = free_port()
    env = {
        **containers.env,
        "PAX_DB": str(tmp_path / "pax.db"),
        "PAX_ADMIN_TOKEN": ADMIN,
        "PAX_LAUNCHER": "docker",
        "PAX_DOCKER_ENGINE": containers.name,
        "PAX_DOCKER_IMAGE": IMAGE,
        "PAX_DOCKER_NETWORK": "host",  # the service listens on 127.0.0.1: the host's own
        "PAX_DOCKER_GPUS": "",
        "PAX_DOCKER_DATA_DIR": str(shared_data),
        "PAX_RUNS_ROOT": str(tmp_path / "runs"),
        "PAX_CONCURRENCY": "1",
    }
    proc = start_service(env, port=port, cwd=tmp_path, log=tmp_path / "serve.log")
    try:
        client = Client(f"http://127.0.0.1:{port}", ADMIN)
        cfg = tiny_raw(shared_data, name="boxed")
        cfg["data"]["tokenized_dir"] = "data"  # the data folder mounted into the container
        run = client.submit_run(cfg, launcher="docker")["id"]
        done = wait_until(
            lambda: (r := status(client, run))["status"] in ("succeeded", "failed") and r,
            300,
            "the containerized trainer finishing",
            every=1,
        )
        assert done["status"] == "succeeded", done["exit_reason"]
        assert client.get(f"/runs/{run}/metrics", params={"name": "train/loss"})["total"] > 0
        run_dir = next((tmp_path / "runs").glob("*-boxed"))
        owner = (run_dir / "metrics.json").stat().st_uid
        assert owner == (10001 if os.geteuid() == 0 else os.geteuid())
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        for n in containers("ps", "-a", "--format", "{{.Names}}").stdout.split():
            if n.startswith("pax-run-"):
                containers("rm", "-f", n, check=False)
