"""A live run page re-reads only the points after those it already has."""

from runner.ledger import series as series_store
from tests.helpers import tiny_raw
from tests.runner.conftest import post_run
from web.series_cache import SeriesCache


def test_refresh_reads_only_the_new_tail(service, tokenized_dir, monkeypatch):
    rid = post_run(service, tiny_raw(tokenized_dir.parent))["id"]
    pts = [
        {"step": s, "tokens": s, "name": "train/loss", "value": 5 - s / 1e4} for s in range(5000)
    ]
    service.post(f"/runs/{rid}/metrics", json={"points": pts}).raise_for_status()
    engine = service.app.state.engine
    calls = []
    real = series_store.read

    def spy(*a, **kw):
        calls.append(a[4] if len(a) > 4 else kw.get("after_step"))
        return real(*a, **kw)

    monkeypatch.setattr(series_store, "read", spy)
    cache = SeriesCache()
    first = cache.get(engine, rid, "train/loss", 200)
    assert calls == [None] and len(first) <= 200 and first[-1][0] == 4999
    new = {"step": 5000, "tokens": 5000, "name": "train/loss", "value": 0.5}
    service.post(f"/runs/{rid}/metrics", json={"points": [new]}).raise_for_status()
    second = cache.get(engine, rid, "train/loss", 200)
    assert calls == [None, 4999]  # only the tail after the last kept step
    assert second[-1] == (5000, 5000, 0.5) and second[:-1] == first
