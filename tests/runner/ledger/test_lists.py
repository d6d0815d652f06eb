"""Run lists without per-row overhead: keyset pages that cover every run exactly once while runs
are being added, an optional count, and streamed exports (runs.ndjson, results.csv)."""

import csv
import io
import json

import pytest

from tests.runner.conftest import post_run

pytestmark = pytest.mark.both_backends


def _page(svc, **params):
    r = svc.get("/runs", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_keyset_pages_cover_every_run_once_while_runs_are_added(service, spec):
    first = [post_run(service, spec, name=f"r{i}")["id"] for i in range(12)]
    # oldest first from after_id=0: runs added meanwhile are reached too, none twice
    seen, after, added = [], 0, []
    while True:
        page = _page(service, after_id=after, limit=5, count="false")
        assert page["total"] is None
        seen += [r["id"] for r in page["items"]]
        if page["next_after_id"] is not None and len(added) < 4:  # added between pages
            added.append(post_run(service, spec, name=f"new{len(added)}")["id"])
        if page["next_after_id"] is None:
            break
        after = page["next_after_id"]
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert set(seen) == set(first) | set(added)
    # newest first with before_id: exactly the runs there when it began, each once
    at_start = [r["id"] for r in _page(service, limit=1000)["items"]]
    seen, before = [], None
    while True:
        params = {"limit": 4} | ({"before_id": before} if before else {})
        page = _page(service, **params)
        seen += [r["id"] for r in page["items"]]
        post_run(service, spec, name="late")
        if page["next_before_id"] is None:
            break
        before = page["next_before_id"]
    assert seen == at_start
    # offset still works, and rows carry their latest metrics
    rid = first[0]
    service.post(
        f"/runs/{rid}/metrics",
        json={"points": [{"step": 1, "tokens": 8, "name": "train/loss", "value": 2.5}]},
    ).raise_for_status()
    items = _page(service, limit=1000)["items"]
    row = next(r for r in items if r["id"] == rid)
    assert row["latest"] == {"train/loss": 2.5} and row["status"] == "queued"
    assert "spec_json" not in row and "token_hash" not in row
    assert _page(service, offset=2, limit=3)["items"] == items[2:5]
    # both keys: the ids between them, oldest first (a range the document's schema allows)
    ids = sorted(r["id"] for r in items)
    both = _page(service, before_id=ids[4], after_id=ids[0])
    assert [r["id"] for r in both["items"]] == ids[1:4]


def test_streamed_exports(service, spec, monkeypatch):
    from runner.api.routes import results

    monkeypatch.setattr(results, "PAGE", 3)  # several pages from a few runs
    ids = [post_run(service, spec, name=f"r{i}")["id"] for i in range(7)]
    lines = service.get("/runs.ndjson").text.splitlines()
    assert [json.loads(x)["id"] for x in lines] == ids
    assert service.get("/runs.ndjson", params={"status": "running"}).text == ""
    text = service.get("/results.csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["run_id"]) for r in rows] == ids
    assert text.count("run_id,") == 1  # one header, whatever the pages
