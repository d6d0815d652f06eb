"""Ingest: latest agrees with the stored series; concurrent posts all land."""

import threading

from tests.helpers import tiny_raw
from tests.runner.conftest import post_run


def test_latest_agrees_with_the_stored_series_on_duplicates(service, tokenized_dir):
    run = post_run(service, tiny_raw(tokenized_dir.parent))
    pt = {"step": 300, "tokens": 300, "name": "train/loss"}
    service.post(f"/runs/{run['id']}/metrics", json={"points": [{**pt, "value": 3.0}]})
    service.post(f"/runs/{run['id']}/metrics", json={"points": [{**pt, "value": 999.0}]})
    assert service.run(run["id"])["latest"]["train/loss"] == 3.0
    same_batch = [{**pt, "step": 400, "value": 4.0}, {**pt, "step": 400, "value": 888.0}]
    ack = service.post(f"/runs/{run['id']}/metrics", json={"points": same_batch}).json()
    assert ack["duplicates"] == 1
    series = service.get(f"/runs/{run['id']}/metrics", params={"name": "train/loss"}).json()
    assert [p["value"] for p in series["points"]] == [3.0, 4.0]
    assert service.run(run["id"])["latest"]["train/loss"] == 4.0


def test_concurrent_posts_all_land(service, tokenized_dir):
    """Writes from many threads at once land, every one, with no server error."""
    run = post_run(service, tiny_raw(tokenized_dir.parent))
    errors = []

    def post(k):
        pts = [{"step": k * 100 + i, "tokens": 1, "name": "x", "value": 1.0} for i in range(100)]
        r = service.post(f"/runs/{run['id']}/metrics", json={"points": pts})
        if r.status_code != 200:
            errors.append(r.text)

    threads = [threading.Thread(target=post, args=(k,)) for k in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert service.get(f"/runs/{run['id']}/metrics", params={"name": "x"}).json()["total"] == 800
