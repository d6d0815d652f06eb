"""Series read at chart size from the database (runner.ledger.series): a long, spiky series
keeps its first and last points and every span's min and max; repeated posts do not count
twice; a live chart can ask for the tail after a step."""

import random

import pytest

from tests.runner.conftest import post_run

pytestmark = pytest.mark.both_backends  # SQLite and PostgreSQL


def post(svc, rid, pts, chunk=2000):
    with svc.client() as c:
        for i in range(0, len(pts), chunk):
            c.post(f"/runs/{rid}/metrics", json={"points": pts[i : i + chunk]}).raise_for_status()


def read(svc, rid, **params):
    r = svc.get(f"/runs/{rid}/metrics", params={"name": "train/loss", **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_long_spiky_series_keeps_its_envelope(service, spec):
    rid = post_run(service, spec)["id"]
    rng = random.Random(0)
    n = 20_000
    spikes = {1000 + 2000 * k: 50.0 + k for k in range(10)}
    dips = {2000 + 2000 * k: -5.0 - k for k in range(9)}
    pts = [
        {
            "step": s,
            "tokens": 64 * s,
            "name": "train/loss",
            "value": spikes.get(s, dips.get(s, 3.0 + rng.random())),
        }
        for s in range(n)
    ]
    rng.shuffle(pts)  # the order posts arrive in does not matter
    post(service, rid, pts)
    post(service, rid, pts[:3000])  # a retried post: nothing counts twice
    body = read(service, rid, max_points=200)
    got = [(p["step"], p["value"]) for p in body["points"]]
    assert body["total"] == n and body["downsampled"] and 100 <= len(got) <= 200
    steps = [s for s, _ in got]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == n - 1
    # every spike and dip is the max or min of its span, so every one is kept
    for s, v in {**spikes, **dips}.items():
        assert (s, v) in got, (s, v)
    # the same when the series is short enough to be read whole and thinned
    small = read(service, rid, max_points=5000)
    assert small["total"] == n and len(small["points"]) <= 5000
    kept = {(p["step"], p["value"]) for p in small["points"]}
    assert all((s, v) in kept for s, v in spikes.items())


def test_tail_after_a_step(service, spec):
    rid = post_run(service, spec)["id"]
    post(
        service,
        rid,
        [{"step": s, "tokens": s, "name": "train/loss", "value": 1.0} for s in range(300)],
    )
    tail = read(service, rid, after_step=289)
    assert [p["step"] for p in tail["points"]] == list(range(290, 300)) and tail["total"] == 10
    assert read(service, rid, after_step=299)["points"] == []
    assert service.get(f"/runs/{rid}/metrics", params={"after_step": -5}).status_code == 422
