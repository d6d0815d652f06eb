"""Workers pull runs over HTTP: an atomic claim, no double claims when several race."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.runner.conftest import ADMIN, post_run, run_spec


def test_claim_is_admin_only_and_204_when_empty(service):
    assert service.post("/claim", token=None, json={"worker": "w"}).status_code == 401
    with service.client() as c:
        assert c.post("/claim", json={"worker": "w"}).status_code == 204
        assert c.post("/claim", json={"worker": "bad name!"}).status_code == 422


@pytest.mark.slow
def test_two_workers_racing_for_one_queue(service_factory, tokenized_dir, tmp_path):
    service = service_factory()
    runs = [
        post_run(service, run_spec(tokenized_dir.parent, max_tokens=2 * 8 * 64), name=f"r{i}")
        for i in range(4)
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PAX_ADMIN_TOKEN": ADMIN}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pax.cli",
                "worker",
                "--runner-url",
                service.url,
                "--name",
                f"w{i}",
                "--runs-root",
                str(tmp_path / f"w{i}"),
                "--poll-s",
                "0.2",
                "--idle-exit-s",
                "3",
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
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


def test_exit_report_requeues_a_preempted_run(service, tokenized_dir):
    run = post_run(service, run_spec(tokenized_dir.parent))
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
    run = post_run(service, run_spec(tokenized_dir.parent))
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
