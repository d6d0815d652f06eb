"""A result document can't break a run's pages: the whole document is checked (types of the
known parts, a depth bound) before it is stored, and a document a ledger holds from before the
checks is shown as a note (issue 25: `smallbench.tasks: "x"` made /runs/{id} a 500 for good;
an extra field nested 260 levels made GET /api/v1/runs/{id} a 500)."""

import json

import pytest
from sqlalchemy import text

from runner.ledger.db import make_engine
from tests.runner.conftest import post_run


def deep(levels: int) -> dict:
    doc: dict = {}
    for _ in range(levels):
        doc = {"x": doc}
    return doc


@pytest.mark.parametrize(
    "extra,fragment",
    [
        ({"smallbench": {"tasks": "x"}}, "smallbench.tasks"),
        ({"smallbench": {"tasks": ["x"]}}, "smallbench.tasks"),
        ({"dev_curve": [{"word_ppl": "lots"}]}, "dev_curve"),
        ({"latency": {"seq128": {"median_ms": [1]}}}, "latency"),
        ({"extra": deep(260)}, "nested deeper than 24"),
    ],
)
def test_a_result_that_would_break_a_page_is_refused(service, spec, extra, fragment):
    run = post_run(service, spec)
    doc = {"run": {"status": "succeeded"}, **extra}
    r = service.post(f"/runs/{run['id']}/result", json=doc)
    assert r.status_code == 422 and fragment in r.json()["detail"], r.text
    assert service.page(f"/runs/{run['id']}").status_code == 200
    assert service.get(f"/runs/{run['id']}").status_code == 200


def test_pages_tolerate_a_document_stored_before_the_checks(service, spec):
    run = post_run(service, spec)
    bad = {"run": {"status": "succeeded"}, "smallbench": {"tasks": "x"}, "extra": deep(300)}
    engine = make_engine(service.db)
    try:
        with engine.begin() as c:  # as an older pax stored it, unchecked
            c.execute(
                text(
                    "INSERT INTO results (run_id, metrics_json, sample, created_at) "
                    "VALUES (:r, :d, false, 0)"
                ),
                {"r": run["id"], "d": json.dumps(bad)},
            )
    finally:
        engine.dispose()
    page = service.page(f"/runs/{run['id']}")
    assert page.status_code == 200 and "can't be shown" in page.text
    got = service.get(f"/runs/{run['id']}")
    assert got.status_code == 200 and "unshowable" in got.json()["result"]
    assert service.get("/results.csv").status_code == 200
