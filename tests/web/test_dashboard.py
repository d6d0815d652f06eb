"""The dashboard in a real browser (Debian's chromium via playwright) against a real service."""

import os
import shutil
from pathlib import Path

import pytest

from runner.release.page import CHROMIUM_FLAGS as FLAGS
from tests.conftest import ROOT
from tests.helpers import tiny_raw
from tests.runner.conftest import post_run

SHOTS = Path(os.environ.get("PAX_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"


def chromium() -> str | None:
    for c in (
        os.environ.get("PAX_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if c and Path(c).is_file():
            return c
    return None


@pytest.fixture
def browser():
    pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    exe = chromium()
    if exe is None:
        pytest.skip("no chromium found (apt-get install chromium; .ci/run installs it)")
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=FLAGS)
        yield b
        b.close()


def seeded(svc, tok_root, n=3):
    runs = [post_run(svc, tiny_raw(tok_root), name=f"cell-{i}") for i in range(n)]
    with svc.client() as c:
        for r in runs:
            pts = [
                {"step": s, "tokens": 512 * s, "name": "train/loss", "value": 6 - s / 20}
                for s in range(1, 41)
            ]
            pts += [
                {"step": s, "tokens": 512 * s, "name": "dev/word_ppl", "value": 900 - 10 * s}
                for s in range(10, 41, 10)
            ]
            c.post(f"/runs/{r['id']}/metrics", json={"points": pts}).raise_for_status()
    return runs


def test_empty_ledger_shows_how_to_start(service):
    html = service.page("/").text
    assert "No experiments yet" in html and "/api/v1/sweeps" in html and "curl" in html


def test_pages_render_without_javascript(service, tokenized_dir):
    runs = seeded(service, tokenized_dir.parent)
    html = service.page("/").text
    for r in runs:
        assert f'href="/runs/{r["id"]}"' in html and r["name"] in html
    run = service.page(f"/runs/{runs[0]['id']}").text
    assert run.count("<svg") >= 2 and "<polyline" in run and "embedding" in run
    assert service.page("/cost").status_code == 200
    nf = service.page("/runs/424242")
    assert nf.status_code == 404 and "There is no run 424242" in nf.text
    assert service.page("/nope/nope").status_code == 404
    assert service.page("/static/app.css").headers["content-type"].startswith("text/css")


@pytest.mark.slow
def test_browser_overview_live_update_and_run_charts(service_factory, tokenized_dir, browser):
    service = service_factory()
    runs = seeded(service, tokenized_dir.parent)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(service.url + "/")
    rows = page.locator("#runs-body tr")
    assert rows.count() == 3
    assert "cell-0" in page.locator("#runs-body").inner_text()
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

    rid = runs[0]["id"]
    page.goto(f"{service.url}/runs/{rid}")
    assert page.locator("svg.chart polyline").count() >= 2  # loss and dev curves
    assert page.locator("#dev-ppl").inner_text() == "500.00"
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)
    # a point posted through the API appears on the open page, without a reload
    page.evaluate("window.__marker = 1")
    service.post(
        f"/runs/{rid}/metrics",
        json={"points": [{"step": 50, "tokens": 25600, "name": "dev/word_ppl", "value": 123.45}]},
    ).raise_for_status()
    # a locator wait, not wait_for_function: the page's CSP forbids eval, which that uses
    from playwright.sync_api import expect

    expect(page.locator("#dev-ppl")).to_have_text("123.45", timeout=15_000)
    assert page.evaluate("window.__marker") == 1  # same document: no reload happened

    page.goto(service.url + "/cost")
    page.screenshot(path=str(SHOTS / "cost.png"), full_page=True)
    page.goto(service.url + "/runs/999999")
    assert "There is no run 999999" in page.content()
    page.screenshot(path=str(SHOTS / "not_found.png"), full_page=True)


@pytest.mark.slow
def test_browser_sweep_page(service_factory, tokenized_dir, browser):
    service = service_factory()
    from tests.helpers import post_result, small_plan, submit

    sw = submit(service, small_plan(tokenized_dir.parent)).json()
    detail = service.get(f"/sweeps/{sw['id']}").json()
    for i, c in enumerate(detail["cells"]):
        post_result(service, c["run_id"], 100.0 + 7 * i, latency=1.0 + i)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{service.url}/sweeps/{sw['id']}")
    page.wait_for_selector("text=Ranking · embedding_ratio")
    assert page.locator("svg.chart").count() == 3
    assert "Pareto" in page.content()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "sweep.png"), full_page=True)
