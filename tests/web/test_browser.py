"""The dashboard as a researcher uses it, in Debian's chromium through playwright, against a
real `pax serve`: compare three runs, a Pareto chart with an outlier, a cancel from the page (and
a refusal), the cost forecast of a local sweep, axe-core's checks on every page in light and
dark mode, and screenshots at 1400 and 390 px."""

import itertools
import re
from pathlib import Path

import pytest

from tests.helpers import post_result, small_plan, submit, tiny_raw
from tests.runner.conftest import ADMIN, post_run
from tests.web.test_dashboard import SHOTS, browser  # noqa: F401

pytestmark = pytest.mark.slow
AXE = Path(__file__).parent / "vendor" / "axe.min.js"  # axe-core 4.14.1 (MPL-2.0), from npm
WIDTHS = (1400, 390)
BLOCKING = ("serious", "critical")


def axe_violations(browser, url: str, scheme: str) -> list[dict]:  # noqa: F811
    """axe-core's violations of one page; the context bypasses the CSP only to inject axe."""
    ctx = browser.new_context(
        viewport={"width": 1400, "height": 900}, color_scheme=scheme, bypass_csp=True
    )
    page = ctx.new_page()
    page.goto(url)
    page.add_script_tag(content=AXE.read_text())
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
             .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target)}))"""
    )
    ctx.close()
    return found


def check_pages(browser, base: str, paths: dict[str, str]) -> None:  # noqa: F811
    """No serious or critical axe violation, light and dark; screenshots at both widths."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    bad = []
    for (name, path), scheme in itertools.product(paths.items(), ("light", "dark")):
        bad += [
            (name, scheme, v)
            for v in axe_violations(browser, base + path, scheme)
            if v["impact"] in BLOCKING
        ]
    assert not bad, bad
    for width in WIDTHS:
        ctx = browser.new_context(viewport={"width": width, "height": 900})
        page = ctx.new_page()
        for name, path in paths.items():
            page.goto(base + path)
            # nothing wider than the screen: wide tables and charts scroll inside their card
            assert page.evaluate("document.documentElement.scrollWidth") <= width, (name, width)
            page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        ctx.close()


def no_csp_errors(page) -> list[str]:
    errors: list[str] = []
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return errors


def test_compare_cancel_and_axe(service_factory, tokenized_dir, browser):  # noqa: F811
    from playwright.sync_api import expect

    svc = service_factory()
    tok = tokenized_dir.parent
    runs = [
        post_run(svc, tiny_raw(tok, optim={"lr": lr}, runtime={"seed": s}), name=n)
        for lr, s, n in ((3e-3, 1, "base"), (1e-3, 2, "lr-low"), (1e-2, 3, "lr-high"))
    ]
    for k, r in enumerate(runs):
        pts = [
            {"step": s, "tokens": 512 * s, "name": "train/loss", "value": 6 - s / 20 + k / 10}
            for s in range(1, 41)
        ]
        pts += [
            {"step": s, "tokens": 512 * s, "name": "dev/word_ppl", "value": 900 - 10 * s + k}
            for s in range(10, 41, 10)
        ]
        svc.post(f"/runs/{r['id']}/metrics", json={"points": pts}).raise_for_status()
    ids = [r["id"] for r in runs]

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    csp = no_csp_errors(page)
    page.goto(svc.url + "/")
    # select from the table: the selection is written into the URL, so it can be shared
    for rid in ids:
        page.locator(f'input.pick[value="{rid}"]').check()
    expect(page).to_have_url(re.compile(r"sel=" + ",".join(map(str, ids)) + "$"))
    # the open list patches in the row that changed, and keeps the ticks
    point = {"step": 99, "tokens": 99 * 512, "name": "dev/word_ppl", "value": 77.25}
    svc.post(f"/runs/{ids[1]}/metrics", json={"points": [point]}).raise_for_status()
    expect(page.locator(f"#run-row-{ids[1]}")).to_contain_text("77.25", timeout=15_000)
    assert page.locator("input.pick:checked").count() == 3
    page.get_by_role("button", name=re.compile("Compare selected")).click()
    expect(page).to_have_url(re.compile(r"/compare\?runs=" + ",".join(map(str, ids)) + "$"))
    # curves drawn: three runs on each of the two charts
    assert page.locator("svg.chart polyline.series").count() == 6
    labels = page.locator("#fig-compare-dev-word_ppl svg text.legend").all_text_contents()
    assert labels == [f"#{i} {n}" for i, n in zip(ids, ("base", "lr-low", "lr-high"), strict=True)]
    # the diff shows only the fields that differ (one model: the plans are equal too)
    fields = page.locator("#config-diff tbody th").all_inner_texts()
    assert fields == ["name", "optim.lr", "runtime.seed"], fields
    for row in page.locator("#config-diff tbody tr").all():
        vals = row.locator("td").all_inner_texts()
        assert len(set(vals)) > 1, vals
    # the x axis switch and smoothing keep the selection
    page.get_by_label("x axis").select_option("steps")
    page.get_by_label("smoothing").select_option("0.9")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"x=steps.*smooth=0.9"))
    assert page.locator("svg.chart polyline.series").count() == 6
    with page.expect_download() as dl:
        page.locator("#fig-compare-train-loss button[data-download=svg]").click()
    assert dl.value.suggested_filename == "compare-train-loss.svg"
    assert Path(dl.value.path()).read_text().startswith("<svg")

    # actions: read-only without a token
    rid = ids[0]
    page.goto(f"{svc.url}/runs/{rid}")
    cancel = page.get_by_role("button", name="Cancel run")
    assert cancel.is_hidden()
    page.on("dialog", lambda d: d.accept())
    # a wrong token: the API's refusal is shown verbatim, nothing changes
    page.locator("#admin-token").fill("not-the-token")
    page.get_by_role("button", name="Use").click()
    expect(cancel).to_be_visible()
    cancel.click()
    refusal = svc.post(f"/runs/{rid}/cancel", token="not-the-token")
    expect(page.locator("#action-msg")).to_have_text(
        f"Refused ({refusal.status_code}): {refusal.json()['detail']}"
    )
    assert svc.get(f"/runs/{rid}").json()["status"] == "queued"
    # the right token: cancelled, and the page says so after its reload
    page.get_by_role("button", name="Forget token").click()
    expect(cancel).to_be_hidden()
    page.locator("#admin-token").fill(ADMIN)
    page.get_by_role("button", name="Use").click()
    cancel.click()
    expect(page.locator("#action-msg")).to_have_text("Cancel run: done.")
    assert svc.get(f"/runs/{rid}").json()["status"] == "cancelled"
    expect(page.get_by_role("cell", name="cancelled by the user")).to_be_visible()
    # a cancelled run can be queued again from the same page
    page.get_by_role("button", name="Requeue").click()
    expect(page.locator("#action-msg")).to_have_text("Requeue: done.")
    assert svc.get(f"/runs/{rid}").json()["status"] == "queued"
    assert not csp, csp
    page.close()

    check_pages(
        browser,
        svc.url,
        {
            "overview": "/",
            "run": f"/runs/{ids[1]}",
            "compare": "/compare?runs=" + ",".join(map(str, ids)),
            "compare-empty": "/compare",
            "not_found": "/runs/999999",
        },
    )


def _boxes(locator) -> list[dict]:
    return [b for b in (e.bounding_box() for e in locator.all()) if b]


def _overlap(a, b) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def _ticks(page, fig: str) -> list[float]:
    def num(t):
        m = {"k": 1e3, "M": 1e6}.get(t[-1], 1)
        return float(t.rstrip("kM")) * m

    texts = page.locator(f"{fig} svg text.tick[text-anchor=end]").all_text_contents()
    return [num(t) for t in texts]


def test_sweep_outlier_and_cost_forecast(service_factory, tokenized_dir, browser):  # noqa: F811
    from playwright.sync_api import expect

    svc = service_factory()
    plan = small_plan(tokenized_dir.parent).replace("name: small", "name: small\nbudget_usd: 5")
    sw = submit(svc, plan).json()
    cells = svc.get(f"/sweeps/{sw['id']}").json()["cells"]
    for i, c in enumerate(cells):
        if c["cell"] == "control-lr-tiny":
            post_result(svc, c["run_id"], 200_000.0, status="killed", latency=1.5)
        else:
            post_result(svc, c["run_id"], 100.0 + 0.4 * i, latency=1.0 + 0.05 * i)

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{svc.url}/sweeps/{sw['id']}")
    pareto = f"#fig-sweep{sw['id']}-pareto"
    # the outlier does not set the axis: every tick sits near the real cells
    assert max(_ticks(page, pareto)) < 1000, _ticks(page, pareto)
    assert "1 faded point off the axes" in page.locator(f"{pareto} svg text.note").text_content()
    # no two point labels overlap, on any chart (their rendered boxes, from the DOM)
    for fig in page.locator("figure.chart-fig").all():
        boxes = _boxes(fig.locator("svg text.point"))
        assert boxes, "a chart without labels"
        for a, b in itertools.combinations(boxes, 2):
            assert not _overlap(a, b), (a, b)
    # the axis shows achieved values: the planner's, not the plan's round 0.35/0.45
    table = page.locator(f"#fig-sweep{sw['id']}-embedding_ratio details table").inner_text()
    assert "0.35\t" not in table and "0.45\t" not in table
    page.get_by_role("link", name="show all").click()
    assert max(_ticks(page, pareto)) >= 100_000
    page.get_by_role("link", name="linear").click()
    expect(page).to_have_url(re.compile(r"scale=linear"))
    assert "(linear)" in page.locator(f"{pareto} svg").text_content()
    assert page.get_by_role("link", name="compare this axis").count() == 2
    # cells ticked in the ranking tables open the comparison of their runs
    values = [b.get_attribute("value") for b in page.locator("input.pick").all()]
    picked = list(dict.fromkeys(values))[:2]  # the baseline is listed on both axes
    for v in picked:
        page.locator(f'input.pick[value="{v}"]').first.check()
    # the baseline's second box follows its first: one run, one tick
    assert page.locator("input.pick:checked").count() == values.count(picked[0]) + values.count(
        picked[1]
    )
    page.get_by_role("button", name=re.compile("Compare selected")).click()
    expect(page).to_have_url(re.compile(r"/compare\?runs=" + ",".join(picked) + "$"))
    assert page.locator("#compare-metrics tbody tr").count() == 2

    # the cost page forecasts the local sweep: spent $0, but what it would cost on a GPU
    page.goto(f"{svc.url}/cost")
    forecast = page.locator(f"#sweep-{sw['id']} [data-testid=forecast]")
    expect(forecast).to_contain_text("would cost $")
    usd = float(re.search(r"would cost \$([\d,.]+)", forecast.inner_text())[1].replace(",", ""))
    api = svc.get(f"/sweeps/{sw['id']}/cost").json()
    assert usd == round(api["what_if"]["whole_sweep_usd"], 2) and usd > 0
    assert "CPU-hours used" in page.locator(f"#sweep-{sw['id']}").text_content()
    page.close()

    check_pages(
        browser,
        svc.url,
        {"sweep": f"/sweeps/{sw['id']}", "sweep-all": f"/sweeps/{sw['id']}?all=1", "cost": "/cost"},
    )
