"""No 5xx from bad input: each refusal is a 4xx naming the field."""

import pytest

from tests.helpers import tiny_raw
from tests.runner.conftest import claim_token, post_run


def deep_yaml(levels: int) -> str:
    return "a: " + "[" * levels + "]" * levels


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/runs/99999999999999999999", None),
        ("GET", "/runs?offset=99999999999999999999", None),
        ("GET", "/runs?sweep=99999999999999999999", None),
        ("GET", "/runs?sweep=%C2%B2", None),
        ("GET", "/runs?status=nonsense", None),
        ("GET", "/badge.svg?sweep=99999999999999999999", None),
        ("POST", "/runs/1/heartbeat", {"tokens": 2**63}),
        ("POST", "/runs/1/heartbeat", {"step": "10"}),
        (
            "POST",
            "/runs/1/result",
            {"run": {"status": "succeeded"}, "training": {"tokens_seen": [1]}},
        ),
        (
            "POST",
            "/runs/1/result",
            {"run": {"status": "succeeded"}, "training": {"tokens_seen": 1e30}},
        ),
        (
            "POST",
            "/runs/1/result",
            {"run": {"status": "succeeded"}, "training": {"tokens_seen": 2**64}},
        ),
        ("POST", "/runs/1/result", {"run": {"status": "succeeded"}, "training": "x"}),
        ("POST", "/runs/1/result", {"run": {"status": "running"}}),
        ("POST", "/runs/1/result", {"dev": {"word_ppl": 1}}),
        ("POST", "/runs/1/exit", {"code": False}),
        (
            "POST",
            "/runs/1/metrics",
            {"points": [{"step": 1, "tokens": 1, "name": "x", "value": True}]},
        ),
        ("POST", "/runs", {"config": {}, "sweep_id": 424242}),
        ("POST", "/runs", {"config": {}, "sweep_id": 2**70}),
        ("POST", "/sweeps", {"name": ["x"], "experiments": {"a": {}}}),
        ("POST", "/sweeps", {"experiments": ["a"]}),
        ("POST", "/sweeps", {"base": "x", "experiments": {"a": {}}}),
        ("POST", "/sweeps", {"description": 5, "experiments": {"a": {}}}),
        ("POST", "/sweeps", {"base": {"max_tokens": "lots"}, "experiments": {"a": {}}}),
        ("POST", "/sweeps", {"name": "x\u202eevil", "ranking": {}}),
        ("YAML", "/sweeps", deep_yaml(5000)),
    ],
)
def test_bad_input_is_a_4xx_that_says_why(service, tokenized_dir, method, path, body):
    post_run(service, tiny_raw(tokenized_dir.parent))
    if method == "GET":
        r = service.get(path)
    elif method == "YAML":
        r = service.post(path, content=body, headers={"Content-Type": "application/yaml"})
    else:
        r = service.post(path, json=body)
    assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text[:300])
    assert r.json()["detail"], r.text


def test_finished_runs_take_no_more_points_and_tokens_stay_within_budget(service, tokenized_dir):
    run = post_run(service, tiny_raw(tokenized_dir.parent))
    token = claim_token(service.db, run["id"])
    over = {"tokens": run["max_tokens"] + 1}
    r = service.post(f"/runs/{run['id']}/heartbeat", token=token, json=over)
    assert r.status_code == 422 and "budget" in r.json()["detail"]
    service.post(f"/runs/{run['id']}/cancel").raise_for_status()
    late = {"points": [{"step": 1, "tokens": 1, "name": "train/loss", "value": 1.0}]}
    assert service.post(f"/runs/{run['id']}/metrics", token=token, json=late).status_code == 409
    ack = service.post(f"/runs/{run['id']}/heartbeat", token=token, json={"step": 2}).json()
    assert ack["action"] == "stop"  # and its trainer is told to stop
