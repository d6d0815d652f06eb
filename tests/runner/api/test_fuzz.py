"""Property-based fuzzing of the API (hypothesis): whatever arrives, never a 5xx."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runner.conftest import ADMIN, in_process

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=15), kids, max_size=5)
    ),
    max_leaves=20,
)
point = st.fixed_dictionaries(
    {
        "step": json_values | st.integers(-5, 10**6),
        "tokens": json_values | st.integers(0, 10**9),
        "name": json_values | st.from_regex(r"[a-z/_]{1,20}", fullmatch=True),
        "value": json_values | st.floats(),
    }
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"points": st.lists(point, max_size=5)}),
    st.fixed_dictionaries({"config": json_values}),
    st.binary(max_size=50).map(lambda b: b"raw:" + b),
)
run_ids = st.one_of(st.integers(-3, 5), st.sampled_from(["abc", "1.5", "99999999999999999999"]))
routes = st.sampled_from(["", "/metrics", "/heartbeat", "/result", "/cancel"])
tokens = st.sampled_from([ADMIN, "nope", "", "Bearer x"])


def small_run(name: str) -> dict:
    """A run for a worker (no data here: a local launch would be refused at submission)."""
    config = {
        "name": name,
        "max_tokens": 4096,
        "model": {"total_params": 60000, "vocab_size": 512},
        "data": {"seq_len": 64, "batch_size": 8},
    }
    return {"config": config, "launcher": "worker"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with in_process(tmp_path_factory.mktemp("fuzz")) as svc:
        svc.post("/runs", json=small_run("seed"))
        yield svc


def send(client, method, url, body, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, bytes):
        return client.request(
            method, url, content=body[4:], headers={**headers, "Content-Type": "application/json"}
        )
    return client.request(
        method,
        url,
        content=json.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
    )


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(run_id=run_ids, route=routes, body=bodies, token=tokens)
def test_posts_never_5xx(live, run_id, route, body, token):
    url = "/runs" if route == "" and run_id == 0 else f"/runs/{run_id}{route}"
    r = send(live.client(None), "POST", url, body, token)
    assert r.status_code < 500, (url, body, r.text)
    if r.status_code >= 400:
        assert r.json().get("detail"), r.text  # every refusal says why


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    params=st.dictionaries(
        st.sampled_from(["status", "sweep", "limit", "offset", "name", "max_points", "x"]),
        st.one_of(st.text(max_size=10), st.integers(-5, 10**7)),
        max_size=4,
    ),
    path=st.sampled_from(
        ["/runs", "/runs/1/metrics", "/runs/1/events", "/runs/7", "/results.csv", "/runs/1/log"]
    ),
)
def test_gets_never_5xx(live, params, path):
    r = live.get(path, params=params)
    assert r.status_code < 500, (path, params, r.text)


def test_nan_in_raw_json_is_refused(live):
    # A run of its own: the fuzzers above may have cancelled run 1 (then 409, not 422).
    run = live.post("/runs", json=small_run("nan-target")).json()
    body = b'{"points": [{"step": 1, "tokens": 1, "name": "x", "value": NaN}]}'
    r = live.post(
        f"/runs/{run['id']}/metrics", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and "finite" in r.text
