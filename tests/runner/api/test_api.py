"""The REST API against a real `pax serve` on 127.0.0.1 with a real SQLite ledger."""

import csv
import io
import os
import stat
from pathlib import Path

import pytest

from tests.runner.conftest import ADMIN, claim_token, post_run, series

pytestmark = pytest.mark.both_backends  # SQLite and PostgreSQL (tests/runner/conftest.py)


def test_submit_list_get(service, spec):
    run = post_run(service, spec)
    assert run["status"] == "queued" and run["name"] == "tiny" and run["id"] == 1
    wrapped = post_run(service, spec, name="other", priority=5)
    assert wrapped["name"] == "other" and wrapped["priority"] == 5
    listing = service.get("/runs", params={"status": "queued"}).json()
    assert listing["total"] == 2 and [r["id"] for r in listing["items"]] == [2, 1]
    page = service.get("/runs", params={"limit": 1, "offset": 1}).json()
    assert [r["id"] for r in page["items"]] == [1] and page["total"] == 2
    detail = service.get("/runs/1").json()
    assert detail["config"]["model"]["total_params"] == 60_000 and detail["result"] is None
    assert service.get("/runs/99").status_code == 404


def test_invalid_config_names_the_field(service, spec):
    with service.client() as c:
        r = c.post("/runs", json={**spec, "optim": {"lr": -1}})
        assert r.status_code == 422 and "optim.lr" in r.json()["detail"]
        r = c.post(
            "/runs",
            json={
                **spec,
                "model": {**spec["model"], "tied_lm_head": False, "embedding_ratio": 0.9},
            },
        )
        assert r.status_code == 422 and "model:" in r.json()["detail"]
        r = c.post("/runs", json={"config": spec, "colour": "blue"})
        assert r.status_code == 422 and "colour" in r.json()["detail"]


def test_planner_refusal_is_a_422_with_its_message(service, spec):
    bad = {
        **spec,
        "model": {
            **spec["model"],
            "total_params": 10_000_000,
            "embedding_ratio": 0.45,
            "glu_expansion": 2.0,
            "tied_lm_head": False,
            "vocab_size": 16000,
        },
    }
    with service.client() as c:
        r = c.post("/runs", json=bad)
    assert r.status_code == 422 and "Closest plan" in r.json()["detail"]


def test_auth(service, spec):
    with service.client(token=None) as c:
        r = c.post("/runs", json=spec)
        assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    with service.client(token="wrong") as c:  # too short to be a token
        assert c.post("/runs", json=spec).status_code == 401
    with service.client(token="wrong-but-long-enough-token") as c:
        assert c.post("/runs", json=spec).status_code == 403
    a, b = post_run(service, spec), post_run(service, spec)
    token_a = claim_token(service.db, a["id"])
    point = {"points": [{"step": 1, "tokens": 10, "name": "train/loss", "value": 1.0}]}
    with service.client(token=token_a) as c:
        assert c.post(f"/runs/{a['id']}/metrics", json=point).status_code == 200
        r = c.post(f"/runs/{b['id']}/metrics", json=point)
        assert r.status_code == 403 and "its own run" in r.json()["detail"]
        assert c.post("/runs", json=spec).status_code == 403  # a run token is not an admin


def test_repeated_posts_are_harmless(service, spec):
    run = post_run(service, spec)
    pts = [
        {"step": s, "tokens": 64 * s, "name": "train/loss", "value": 5.0 - s / 100}
        for s in range(1, 101)
    ]
    with service.client() as c:
        first = c.post(f"/runs/{run['id']}/metrics", json={"points": pts}).json()
        again = c.post(f"/runs/{run['id']}/metrics", json={"points": pts[50:]}).json()
    assert first == {"accepted": 100, "duplicates": 0, "action": "continue", "reason": None}
    assert again["accepted"] == 50 and again["duplicates"] == 50
    got = series(service, run["id"], "train/loss")
    assert [p["step"] for p in got] == list(range(1, 101))
    r = service.run(run["id"])
    assert r["latest"]["train/loss"] == pytest.approx(4.0) and r["tokens_seen"] == 6400


def test_downsampling(service, spec):
    run = post_run(service, spec)
    pts = [{"step": s, "tokens": s, "name": "train/loss", "value": float(s)} for s in range(1000)]
    with service.client() as c:
        c.post(f"/runs/{run['id']}/metrics", json={"points": pts})
        r = c.get(f"/runs/{run['id']}/metrics", params={"name": "train/loss", "max_points": 50})
    body = r.json()
    # a smooth curve: each span's min is its first point and its max its last
    assert body["total"] == 1000 and body["downsampled"] and 30 <= len(body["points"]) <= 50
    steps = [p["step"] for p in body["points"]]
    assert steps[0] == 0 and steps[-1] == 999 and steps == sorted(steps)


@pytest.mark.parametrize(
    "payload,fragment",
    [
        ({"points": [{"step": 1, "tokens": 1, "name": "x", "value": "NaN"}]}, "value"),
        ({"points": [{"step": 1, "tokens": 1, "name": "x", "value": "Infinity"}]}, "value"),
        ({"points": [{"step": 1, "tokens": 1, "name": "x", "value": 1, "extra": 2}]}, "extra"),
        ({"points": [{"step": -1, "tokens": 1, "name": "x", "value": 1}]}, "step"),
        ({"points": [{"step": 1, "tokens": 1, "name": "bad name!", "value": 1}]}, "name"),
        ({"pts": []}, "points"),
    ],
)
def test_bad_points_are_4xx_with_a_message(service, spec, payload, fragment):
    run = post_run(service, spec)
    with service.client() as c:
        r = c.post(f"/runs/{run['id']}/metrics", json=payload)
    assert r.status_code == 422 and fragment in r.text


def test_malformed_json_and_huge_batches(service, spec):
    run = post_run(service, spec)
    with service.client() as c:
        r = c.post(
            f"/runs/{run['id']}/metrics",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422 and "JSON" in r.text
        huge = [{"step": s, "tokens": s, "name": "x", "value": 1.0} for s in range(10_001)]
        r = c.post(f"/runs/{run['id']}/metrics", json={"points": huge})
        assert r.status_code == 413 and "split the batch" in r.json()["detail"]


def test_cancel(service, spec):
    run = post_run(service, spec)
    with service.client() as c:
        r = c.post(f"/runs/{run['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        again = c.post(f"/runs/{run['id']}/cancel")
        assert again.status_code == 409 and "cancel applies to" in again.json()["detail"]
        # a cancelled run's trainer is told to stop, and its late points are refused
        ack = c.post(f"/runs/{run['id']}/heartbeat", json={"step": 1}).json()
        assert ack["action"] == "stop"
        late = c.post(f"/runs/{run['id']}/metrics", json={"points": []})
        assert late.status_code == 409 and "cancelled" in late.json()["detail"]
    events = service.get(f"/runs/{run['id']}/events").json()
    assert [(e["from_status"], e["to_status"]) for e in events] == [
        (None, "queued"),
        ("queued", "cancelled"),
    ]
    assert events[-1]["reason"] == "cancelled by the user"


def test_result_settles_status_and_results_csv(service, spec):
    run = post_run(service, spec)
    metrics = {
        "run": {"status": "succeeded", "exit_reason": "done"},
        "training": {"tokens_seen": 8192},
        "dev": {"token_ppl": 10.0, "word_ppl": 20.0, "bits_per_byte": 1.5},
        "provenance": {"sample": True},
    }
    with service.client() as c:
        bad = c.post(f"/runs/{run['id']}/result", json={"no": "run"})
        assert bad.status_code == 422 and "run" in bad.json()["detail"]
        r = c.post(f"/runs/{run['id']}/result", json=metrics)
        assert r.status_code == 200 and r.json()["status"] == "succeeded"
        # a finished run takes no more results
        assert c.post(f"/runs/{run['id']}/result", json=metrics).status_code == 409
    post_run(service, spec)  # a queued one: planned architecture, no metrics yet
    text = service.get("/results.csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2
    assert rows[0]["status"] == "succeeded" and rows[0]["dev_token_ppl"] == "10.0"
    assert rows[0]["sample"] == "True" and rows[0]["d_model"] == "40"
    assert rows[1]["status"] == "queued" and rows[1]["d_model"] == "40"
    for col in ("embedding_ratio", "glu_expansion", "n_layers", "ffn_hidden", "cost_usd"):
        assert col in rows[0]


def test_healthz_and_openapi(service):
    assert service.page("/healthz").json()["ok"] is True
    spec = service.page("/openapi.json").json()
    for path in (
        "/api/v1/runs",
        "/api/v1/runs/{run_id}/metrics",
        "/api/v1/runs/{run_id}/cancel",
        "/api/v1/runs/{run_id}/heartbeat",
        "/api/v1/runs/{run_id}/result",
        "/api/v1/runs/{run_id}/events",
        "/api/v1/results.csv",
        "/api/v1/healthz",
    ):
        assert path in spec["paths"], path
    assert service.page("/docs").status_code == 200


def test_generated_admin_token_is_private(service_factory, tmp_path):
    svc = service_factory(PAX_ADMIN_TOKEN="")
    file = svc.token_file("admin")
    assert file.is_file() and stat.S_IMODE(os.stat(file).st_mode) == 0o600
    token = file.read_text().strip()
    path = file if isinstance(svc.db, Path) else file.relative_to(tmp_path)  # as the log says
    assert token != ADMIN
    log = next(tmp_path.glob("serve-*.log")).read_text()
    assert str(path) in log and token not in log  # where it is, never the token itself
    with svc.client(token=token) as c:
        assert c.post("/runs/1/cancel").status_code == 404  # authorised, run missing


def test_submission_with_missing_data_is_refused_with_the_command(service, spec, tmp_path):
    """A local launch whose tokenized data is not there is a 422 naming the path and the
    command that makes it (the trainer's own words), not a run that fails after launch."""
    nowhere = str(tmp_path / "no-data")
    bad = {**spec, "data": {**spec["data"], "tokenized_dir": nowhere}}
    r = service.post("/runs", json=bad)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert f"{nowhere}/sp512/manifest.json is missing" in detail
    assert f"pax tokenize --input data/wikitext-2 --vocab-size 512 --output {nowhere}" in detail
    assert "scripts/" not in detail  # an installed wheel has no scripts folder
    from trainer.config import validate

    assert detail == validate(bad).missing_data()  # the trainer's text, exactly
    assert service.get("/runs").json()["total"] == 0  # nothing queued
    # a plan is checked the same way, before anything is written
    from tests.helpers import small_plan, submit

    plan = small_plan(tmp_path / "elsewhere").replace("launcher: worker\n", "")  # local
    r = submit(service, plan)
    assert r.status_code == 422 and "pax tokenize" in r.json()["detail"]
    assert service.get("/sweeps").json() == []
    # a worker or a cloud job brings its own data: not checked here
    assert service.post("/runs", json={"config": bad, "launcher": "worker"}).status_code == 201
