"""Dashboard pages in process: live fragments answer 304 while nothing changed, compare reads
its selection from the URL and names a bad field, the cost page forecasts a local sweep, and a
failed run can be requeued through the API the page calls."""

import pytest

from tests.helpers import small_plan, submit, tiny_raw
from tests.runner.conftest import post_run
from tests.web.test_dashboard import seeded


def test_live_fragments_answer_304_until_something_changes(service, tokenized_dir):
    runs = seeded(service, tokenized_dir.parent)
    rid = runs[0]["id"]
    tags = {}
    for path in ("/fragments/runs", f"/fragments/runs/{rid}"):
        first = service.page(path)
        etag = tags[path] = first.headers["etag"]
        assert first.status_code == 200 and etag
        again = service.page(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
    # the run page carries its fragment's tag, so its first poll is a 304 too
    page = service.page(f"/runs/{rid}").text.replace("&#34;", '"')
    assert f'data-etag="{tags[f"/fragments/runs/{rid}"]}"' in page
    point = {"step": 99, "tokens": 99 * 512, "name": "dev/word_ppl", "value": 321.0}
    service.post(f"/runs/{rid}/metrics", json={"points": [point]}).raise_for_status()
    for path, etag in tags.items():
        changed = service.page(path, headers={"If-None-Match": etag})
        assert changed.status_code == 200 and "321.00" in changed.text
        assert changed.headers["etag"] != etag


def test_compare_overlays_runs_and_names_bad_fields(service, tokenized_dir):
    runs = seeded(service, tokenized_dir.parent)
    ids = ",".join(str(r["id"]) for r in runs)
    html = service.page(f"/compare?runs={ids}").text
    assert html.count('class="series"') == 6  # 3 runs x (dev PPL, train loss)
    assert "Final metrics" in html and "Config: fields that differ" in html
    # a plain form sends repeated runs=; the x axis and smoothing are query fields too
    html = service.page(f"/compare?runs={runs[0]['id']}&runs={runs[1]['id']}&x=steps&smooth=0.9")
    assert html.status_code == 200 and "optimizer steps" in html.text and "EMA 0.9" in html.text
    # runs that never logged train/elapsed_s: wall time from tokens/s, and the chart says so
    wall = service.page(f"/compare?runs={ids}&x=wall").text
    assert "wall time estimated from tokens/s" in wall
    for query, field in (
        ("runs=1,abc", "runs: 'abc' is not a run id"),
        (f"runs={ids}&x=bogus", "x: 'bogus' is not an axis"),
        (f"runs={ids}&smooth=2", "smooth: give a number from 0"),
        ("runs=" + ",".join(str(i) for i in range(1, 15)), "compare at most 12"),
    ):
        r = service.page(f"/compare?{query}")
        assert r.status_code == 422 and field in r.text.replace("&#39;", "'"), query
    missing = service.page(f"/compare?runs={runs[0]['id']},999999")
    assert missing.status_code == 200 and "No such run: 999999" in missing.text
    assert "Select runs with the checkboxes" in service.page("/compare").text


def test_wall_time_axis_uses_the_trainers_elapsed_series(service, tokenized_dir):
    run = post_run(service, tiny_raw(tokenized_dir.parent))
    pts = [{"step": s, "tokens": 512 * s, "name": "train/loss", "value": 5.0} for s in (1, 2, 3)]
    pts += [
        {"step": s, "tokens": 512 * s, "name": "train/elapsed_s", "value": 10.0 * s}
        for s in (1, 2, 3)
    ]
    service.post(f"/runs/{run['id']}/metrics", json={"points": pts}).raise_for_status()
    html = service.page(f"/compare?runs={run['id']}&x=wall").text
    assert "training wall time (s)" in html and "estimated" not in html
    # the data table under the chart has the wall times, not the tokens
    assert "<td>10</td>" in html and "<td>30</td>" in html


def test_cost_page_forecasts_a_local_sweep(service, tokenized_dir):
    plan = small_plan(tokenized_dir.parent).replace("name: small", "name: small\nbudget_usd: 0.01")
    sw = submit(service, plan).json()
    cost = service.get(f"/sweeps/{sw['id']}/cost").json()
    w = cost["what_if"]
    assert cost["spent_usd"] == 0 and w["accelerator"] == "H100" and w["whole_sweep_usd"] > 0
    assert w["phases"]["ranking"]["usd"] > 0 and w["whole_budget_share"] > 1
    # every queued run would cross a one-cent cap on an H100: all are named, in claim order
    assert len(w["would_refuse"]) == cost["phases"]["ranking"]["runs"]
    assert "cpu_hours" in cost["usage"]
    html = service.page("/cost").text
    assert f"would cost ${w['whole_sweep_usd']:,.2f}" in html and "over the cap" in html
    a100 = service.get(f"/sweeps/{sw['id']}/cost", params={"what_if": "A100"}).json()
    assert a100["what_if"]["accelerator"] == "A100"
    assert "A100 (spot) would cost" in service.page("/cost?what_if=A100").text
    bad = service.get(f"/sweeps/{sw['id']}/cost", params={"what_if": "TPU9"})
    assert bad.status_code == 422 and "what_if" in bad.json()["detail"]
    assert service.page("/cost?what_if=TPU9").status_code == 422


@pytest.mark.parametrize("first", ["failed", "cancelled"])
def test_requeue_a_failed_or_cancelled_run(service, tokenized_dir, first):
    run = post_run(service, tiny_raw(tokenized_dir.parent))
    rid = run["id"]
    assert service.post(f"/runs/{rid}/requeue", token=None).status_code == 401
    early = service.post(f"/runs/{rid}/requeue")
    assert early.status_code == 409 and "requeue applies to failed, lost, cancelled" in early.text
    if first == "cancelled":
        service.post(f"/runs/{rid}/cancel").raise_for_status()
    else:
        metrics = {"run": {"status": "failed", "exit_reason": "test crash"}}
        service.post(f"/runs/{rid}/result", json=metrics).raise_for_status()
    assert service.get(f"/runs/{rid}").json()["status"] == first
    r = service.post(f"/runs/{rid}/requeue")
    assert r.status_code == 200 and r.json()["status"] == "queued"
    events = service.get(f"/runs/{rid}/events").json()
    assert (events[-1]["from_status"], events[-1]["to_status"]) == (first, "queued")
    assert events[-1]["reason"] == "requeued by the user"
    detail = service.get(f"/runs/{rid}").json()
    assert detail["finished_at"] is None and not detail.get("exit_reason")
    assert service.post("/runs/999999/requeue").status_code == 404


def test_live_list_gets_only_changed_rows(service, tokenized_dir):
    runs = seeded(service, tokenized_dir.parent)
    first = service.page("/fragments/runs")
    mark = first.headers["x-pax-now"]
    assert first.text.count("data-run=") == 3
    # the rows written before `mark` (less the overlap) come back once; then nothing is new
    import time

    later = f"{time.time() + 5:.3f}"
    nothing = service.page("/fragments/runs", params={"since": later})
    assert nothing.status_code == 204 and nothing.headers["x-pax-total"] == "3"
    rid = runs[1]["id"]
    point = {"step": 77, "tokens": 77 * 512, "name": "dev/word_ppl", "value": 42.5}
    service.post(f"/runs/{rid}/metrics", json={"points": [point]}).raise_for_status()
    service.post(f"/runs/{runs[2]['id']}/cancel").raise_for_status()
    changed = service.page("/fragments/runs", params={"since": mark})
    assert changed.status_code == 200
    assert f'id="run-row-{rid}"' in changed.text and "42.50" in changed.text
    assert "No runs match" not in changed.text
    # with a filter, a changed run that no longer matches is named, so the page drops its row
    queued = service.page("/fragments/runs", params={"since": mark, "status": "queued"})
    assert queued.headers["x-pax-gone"] == str(runs[2]["id"])
    assert f'id="run-row-{runs[2]["id"]}"' not in queued.text
    # a since that is not a time is the whole list
    assert service.page("/fragments/runs", params={"since": "soon"}).text.count("data-run=") == 3
