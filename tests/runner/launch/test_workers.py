"""Workers pull runs over HTTP: an atomic claim, no double claims when several race."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from runner.cost import Pricing
from tests.conftest import ROOT
from tests.helpers import tiny_raw, wait_until
from tests.runner.conftest import post_run, series

pytestmark = pytest.mark.both_backends  # SQLite and PostgreSQL (tests/runner/conftest.py)


def test_claim_is_admin_only_and_204_when_empty(service):
    assert service.post("/claim", token=None, json={"worker": "w"}).status_code == 401
    with service.client() as c:
        assert c.post("/claim", json={"worker": "w"}).status_code == 204
        assert c.post("/claim", json={"worker": "bad name!"}).status_code == 422


def start_worker(service, tmp_path, name, *extra, runs_root=None):
    """A real `pax worker` (in its own session, as a container's init would run it), its
    output in <tmp>/<name>.log; it reads the worker token from the service's token file."""
    log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pax.cli",
            "worker",
            "--runner-url",
            service.url,
            "--token-file",
            str(service.token_file("worker")),
            "--name",
            name,
            "--runs-root",
            str(runs_root or tmp_path / name),
            "--poll-s",
            "0.2",
            *extra,
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_a_worker_whose_service_is_gone_leaves_after_its_idle_time(tmp_path):
    """A cloud worker kept retrying a service that was gone for good (seen as fake VMs left
    running after their service ended): its VM would be billed forever. Now, with nothing to
    train, unreachable counts as idle: it leaves after --idle-exit-s, saying why."""
    from tests.runner.conftest import free_port

    token = tmp_path / "worker_token"
    token.write_text("w" * 43)
    token.chmod(0o600)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "pax.cli", "worker",
                "--runner-url", f"http://127.0.0.1:{free_port()}",  # nothing listens there
                "--token-file", str(token), "--name", "gone", "--runs-root", str(tmp_path / "r"),
                "--poll-s", "0.2", "--idle-exit-s", "2",
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    assert finish(proc, timeout=120) == 0
    assert "unreachable for over 2s with nothing to train: leaving" in log.read_text()


def finish(proc, timeout=300) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_two_workers_racing_for_one_queue(service_factory, tokenized_dir, tmp_path):
    service = service_factory()
    runs = [
        post_run(service, tiny_raw(tokenized_dir.parent, max_tokens=2 * 8 * 64), name=f"r{i}")
        for i in range(4)
    ]
    workers = [start_worker(service, tmp_path, f"w{i}", "--idle-exit-s", "3") for i in range(2)]
    for i, w in enumerate(workers):
        assert finish(w) == 0, (tmp_path / f"w{i}.log").read_text()
    claimers = {}
    for r in runs:
        detail = service.get(f"/runs/{r['id']}").json()
        assert detail["status"] == "succeeded", detail
        events = service.get(f"/runs/{r['id']}/events").json()
        claims = [e for e in events if e["to_status"] == "launching"]
        assert len(claims) == 1  # claimed once, by one worker
        claimers[r["id"]] = detail["launcher"]
        assert detail["result"]["run"]["status"] == "succeeded"
    assert set(claimers.values()) <= {"worker:w0", "worker:w1"}


@pytest.mark.slow
@pytest.mark.sqlite_only  # the lease and the claim on PostgreSQL: test_reliability, test_replicas
def test_a_run_requeued_to_another_worker_resumes_from_its_last_checkpoint(
    service_factory, tokenized_dir, tmp_path
):
    """Worker A dies with its trainer (SIGKILL, as a lost machine); the lease expires, the run
    is requeued, and worker B, on another disk, resumes it from the checkpoint A left in the
    shared store: one continuous loss curve, every step once."""
    service = service_factory()  # a 6 s lease
    store = tmp_path / "store"
    steps = 400
    run = post_run(
        service,
        tiny_raw(
            tokenized_dir.parent,
            name="long",
            max_tokens=steps * 8 * 64,
            eval={"every_tokens": 100 * 8 * 64},
            checkpoint={"every_steps": 25},
        ),
    )
    a = start_worker(service, tmp_path, "wa", "--checkpoint-url", str(store))
    wait_until(
        lambda: list(store.glob(f"runs/{run['id']}/checkpoints/step_*.json")),
        120,
        "worker A's first checkpoint in the shared store",
    )
    os.killpg(a.pid, signal.SIGKILL)  # the worker and its trainer, at once
    a.wait()
    assert service.run(run["id"])["status"] == "running", "worker A finished before its kill"
    b = start_worker(service, tmp_path, "wb", "--checkpoint-url", str(store), "--idle-exit-s", "20")
    done = service.wait_status(run["id"], ("succeeded", "failed"), timeout=300)
    finish(b, timeout=60)
    log_b = (tmp_path / "wb.log").read_text()
    assert done["status"] == "succeeded" and done["attempt"] == 2, log_b
    resumed = int(re.search(r"resumes from step_(\d+)", log_b).group(1))
    assert 0 < resumed < steps
    attempts = service.get(f"/runs/{run['id']}/attempts").json()
    assert [(x["launcher"], x["outcome"]) for x in attempts] == [
        ("worker:wa", "lost"),
        ("worker:wb", "succeeded"),
    ]
    loss = {p["step"]: p["value"] for p in series(service, run["id"], "train/loss")}
    assert sorted(loss) == list(range(1, steps + 1))  # every step, once
    # continuous: no return to the untrained loss where B took over
    assert loss[1] - loss[resumed] > 1.0
    assert abs(loss[resumed + 1] - loss[resumed]) < 0.5 * (loss[1] - loss[resumed])


@pytest.mark.slow
def test_slots_train_runs_at_once_sharing_a_gpu(service_factory, tokenized_dir, tmp_path):
    service = service_factory()
    runs = [
        post_run(service, tiny_raw(tokenized_dir.parent, max_tokens=60 * 8 * 64), name=f"s{i}")
        for i in range(2)
    ]
    w = start_worker(
        service,
        tmp_path,
        "ws",
        "--slots", "2", "--gpus", "1", "--accelerator", "T4", "--idle-exit-s", "3",
    )  # fmt: skip
    assert finish(w) == 0, (tmp_path / "ws.log").read_text()
    log = (tmp_path / "ws.log").read_text()
    assert log.count("on GPU 0") == 2  # both slots given the one GPU
    rows = [service.get(f"/runs/{r['id']}/attempts").json()[0] for r in runs]
    assert {x["launcher"] for x in rows} == {"worker:ws-s0", "worker:ws-s1"}
    first, second = sorted(rows, key=lambda x: x["started_at"])
    assert second["started_at"] < first["ended_at"]  # they trained at the same time
    assert_gpu_time_split(service, rows, "ws:gpu0")


@pytest.mark.slow
@pytest.mark.sqlite_only  # the worker's own slots: nothing of the ledger's
def test_a_slot_idle_beside_a_busy_one_stays_for_the_next_run(
    service_factory, tokenized_dir, tmp_path
):
    """Each slot used to leave on its own idle time: a slot with nothing to claim while its
    sibling trained a long run was gone for the VM's life, so runs queued later (the finalists
    after a long last ranking run, a preempted worker's requeued runs) got fewer slots than the
    worker had. Now the worker leaves as a whole, once every slot has been idle that long."""
    service = service_factory()
    long = post_run(service, tiny_raw(tokenized_dir.parent, max_tokens=10**7), name="long")
    w = start_worker(
        service, tmp_path, "wi", "--slots", "2", "--gpus", "1", "--accelerator", "T4",
        "--idle-exit-s", "2",
    )  # fmt: skip
    try:
        wait_until(lambda: service.run(long["id"])["status"] == "running", 120, "the long run")
        # the other slot has had nothing to claim for over its idle time; the long run trains on
        wait_until(
            lambda: time.time() - service.run(long["id"])["started_at"] > 5, 60, "idle seconds"
        )
        late = post_run(service, tiny_raw(tokenized_dir.parent), name="late")
        wait_until(
            lambda: service.run(late["id"])["status"] in ("running", "succeeded"),
            60,
            "the idle slot claiming the late run while the long one trains",
        )
        assert service.run(long["id"])["status"] == "running"
        slots = {service.run(r["id"])["launcher"] for r in (long, late)}
        assert slots == {"worker:wi-s0", "worker:wi-s1"}, slots
    finally:
        service.post(f"/runs/{long['id']}/cancel")
    assert finish(w) == 0, (tmp_path / "wi.log").read_text()
    assert "every slot idle for 2s: leaving" in (tmp_path / "wi.log").read_text()


def assert_gpu_time_split(service, rows: list[dict], device: str) -> None:
    """Runs that shared one GPU: each pays half of the time they overlapped and all of the time
    it was alone there, so the GPU's busy time is charged exactly once."""
    price = Pricing().hourly("T4", False)
    first, second = sorted(rows, key=lambda x: x["started_at"])
    overlap = min(first["ended_at"], second["ended_at"]) - second["started_at"]
    assert overlap > 0
    for x in rows:
        assert x["device"] == device and x["outcome"] == "succeeded"
        alone = x["seconds"] - overlap
        assert x["gpu_hours"] * 3600 == pytest.approx(alone + overlap / 2, rel=1e-6)
        assert 0.5 <= x["gpus"] < 1.0
        assert x["cost_usd"] == pytest.approx(x["gpu_hours"] * price)
        run = service.run(x["run_id"])
        assert run["status"] == "succeeded" and run["cost_usd"] == pytest.approx(x["cost_usd"])
    busy = max(x["ended_at"] for x in rows) - first["started_at"]
    assert sum(x["gpu_hours"] for x in rows) * 3600 == pytest.approx(busy, rel=1e-6)


@pytest.mark.slow
def test_sigterm_to_a_worker_checkpoints_its_trainer_and_requeues_the_run(
    service_factory, tokenized_dir, tmp_path
):
    """What `docker stop` does through the container's init: SIGTERM to the worker alone."""
    service = service_factory()
    run = post_run(service, tiny_raw(tokenized_dir.parent, max_tokens=2000 * 8 * 64))
    w = start_worker(service, tmp_path, "wt", "--max-runs", "1")
    wait_until(lambda: service.run(run["id"])["tokens_seen"] > 0, 120, "the trainer training")
    w.send_signal(signal.SIGTERM)
    assert finish(w, timeout=120) == 0, (tmp_path / "wt.log").read_text()
    after = service.run(run["id"])
    last = service.get(f"/runs/{run['id']}/events").json()[-1]
    assert after["status"] == "queued" and "preempted (exit 75" in last["reason"]
    (attempt,) = service.get(f"/runs/{run['id']}/attempts").json()
    assert attempt["outcome"] == "preempted"
    ckpts = list((tmp_path / "wt").glob("*/checkpoints/step_*.json"))
    assert ckpts, "the trainer wrote no checkpoint on SIGTERM"


def test_exit_report_requeues_a_preempted_run(service, tokenized_dir):
    run = post_run(service, tiny_raw(tokenized_dir.parent))
    with service.client() as c:
        claim = c.post("/claim", json={"worker": "w"}).json()
        assert claim["run_id"] == run["id"] and claim["config"]["name"] == "tiny"
        r = c.post(
            f"/runs/{run['id']}/exit",
            json={"code": 75},
            headers={"Authorization": f"Bearer {claim['run_token']}"},
        )
        assert r.status_code == 200 and r.json()["status"] == "queued"
        again = c.post("/claim", json={"worker": "w2"}).json()
        assert again["attempt"] == 2 and again["run_token"] != claim["run_token"]


def test_recoveries_outside_the_runner_are_recorded(service, tokenized_dir):
    run = post_run(service, tiny_raw(tokenized_dir.parent))
    with service.client() as c:
        claim = c.post("/claim", json={"worker": "w"}).json()
        h = {"Authorization": f"Bearer {claim['run_token']}"}
        c.post(
            f"/runs/{run['id']}/heartbeat",
            json={"step": 5, "tokens": 2560, "attempt": 1},
            headers=h,
        ).raise_for_status()
        c.post(
            f"/runs/{run['id']}/heartbeat",
            json={"step": 9, "tokens": 4608, "attempt": 3},
            headers=h,
        ).raise_for_status()
    detail = service.get(f"/runs/{run['id']}").json()
    assert detail["attempt"] == 3 and detail["tokens_seen"] == 4608
    events = service.get(f"/runs/{run['id']}/events").json()
    assert [e["data"]["attempt"] for e in events if e["kind"] == "attempt"] == [3]
