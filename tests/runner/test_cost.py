"""Cost: prices, per-attempt charging, sweep summaries, budget caps."""

import json

import pytest

from runner.cost import Pricing, load_table
from tests.helpers import tiny_raw
from tests.runner.conftest import post_run


def hourly_price(accelerator, spot):
    return Pricing().hourly(accelerator, spot)


def test_price_table_and_attempt_cost():
    table = load_table()
    assert table["date"] and {"T4", "L4", "A10G", "A100", "H100"} <= set(table["accelerators"])
    pricing = Pricing()
    assert pricing.hourly("H100", spot=False) > pricing.hourly("H100", spot=True) > 0
    hours, usd = pricing.attempt_cost(1800, "A100", spot=True)
    assert hours == pytest.approx(0.5) and usd == pytest.approx(0.5 * hourly_price("A100", True))
    assert pricing.attempt_cost(3600, None, False) == (0.0, 0.0)  # local CPU runs are free
    with pytest.raises(ValueError, match="accelerator='TPU9'"):
        pricing.hourly("TPU9", False)
    with pytest.raises(ValueError, match="accelerator='TPU9'"):
        Pricing(accelerator="TPU9")  # refused at start-up, not at the first charge


@pytest.mark.slow
def test_runs_are_charged_and_summarised(service_factory, tokenized_dir):
    svc = service_factory(concurrency=1, PAX_ACCELERATOR="T4", PAX_SPOT="true")
    run = post_run(svc, tiny_raw(tokenized_dir.parent))
    done = svc.wait_status(run["id"], ("succeeded", "failed"), timeout=180)
    assert done["status"] == "succeeded"
    assert done["gpu_hours"] > 0
    assert done["cost_usd"] == pytest.approx(done["gpu_hours"] * hourly_price("T4", True))


def test_budget_cap_refuses_what_would_cross_it(service_factory, tokenized_dir, tmp_path):
    svc = service_factory(concurrency=1, PAX_ACCELERATOR="H100")
    base = tiny_raw(tokenized_dir.parent)
    base.pop("name")
    plan = {
        "name": "capped",
        "budget_usd": 0.00001,  # under what 8192 tokens cost on an H100 at its prior speed
        "baseline": {
            "embedding_ratio": 0.35,
            "glu_expansion": 2.66,
            "vocab_size": 512,
            "tied_lm_head": True,
        },
        "base": base,
        "ranking": {
            "max_tokens": 8192,
            "seeds": [7],
            "embedding_ratio": [0.35],
            "glu_expansion": [2.66],
        },
    }
    r = svc.post("/sweeps", json=plan)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    cells = svc.get(f"/sweeps/{sid}").json()["cells"]
    done = svc.wait_status(cells[0]["run_id"], ("cancelled", "succeeded"), timeout=60)
    assert done["status"] == "cancelled"
    assert done["exit_reason"].startswith("budget:") and "cap $0.00" in done["exit_reason"]
    c = svc.get(f"/sweeps/{sid}/cost").json()
    assert c["budget_usd"] == 0.00001 and c["spent_usd"] == 0.0
    summary = svc.cwd / "reports" / f"sweep-{sid:04d}" / "COST_SUMMARY.json"
    assert json.loads(summary.read_text())["sweep_id"] == sid


@pytest.mark.slow
def test_time_limit_stops_a_run(service_factory, tokenized_dir):
    svc = service_factory(concurrency=1, PAX_MAX_RUN_HOURS="0.001")  # 3.6 s
    run = post_run(svc, tiny_raw(tokenized_dir.parent, max_tokens=2000 * 8 * 64))
    done = svc.wait_status(run["id"], ("failed", "succeeded"), timeout=120)
    assert done["status"] == "failed" and done["exit_reason"].startswith("time limit")


def test_badge(service, tokenized_dir):
    post_run(service, tiny_raw(tokenized_dir.parent))
    r = service.get("/badge.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert "1 runs" in r.text and "$0.00" in r.text
    assert service.get("/badge.svg", params={"sweep": 99}).status_code == 404


def test_catalog_source_falls_back_to_the_table_offline(monkeypatch, tmp_path):
    from runner import cost

    monkeypatch.setenv("HOME", str(tmp_path))  # `import sky` writes ~/.sky
    monkeypatch.setattr(cost, "catalog_price", lambda *a, **k: None)  # what offline returns
    catalog = Pricing(source="skypilot")
    assert catalog.hourly("L4", True) == hourly_price("L4", True)
    assert catalog.catalog == {("L4", True): None}  # asked once, kept on the instance


def test_skypilot_jobs_pay_their_controller_as_the_sweeps_overhead():
    """One managed job per run: SkyPilot's jobs controller (a VM of its own) was never charged.
    A sweep's SkyPilot attempts now carry it as overhead: the union of their lives plus the
    controller's autostop, at its price; a worker's attempts don't (their bill has it)."""
    from runner.cost import controller_overhead

    rows = [
        {"launcher": "skypilot", "started_at": 0.0, "ended_at": 1000.0},
        {"launcher": "skypilot", "started_at": 500.0, "ended_at": 1500.0},
        {"launcher": "worker:pax-w1-s0", "started_at": 5000.0, "ended_at": 9000.0},
        {"launcher": "skypilot", "started_at": 3000.0, "ended_at": None},  # still running
    ]
    usd_h, autostop, _ = Pricing().controller()
    got = controller_overhead(rows, Pricing(), t=3600.0)
    # [0, 1500 + autostop] and [3000, now]
    assert got["seconds"] == pytest.approx(1500 + autostop + 600)
    assert got["usd"] == pytest.approx(got["seconds"] / 3600 * usd_h) and got["usd"] > 0
    assert controller_overhead(rows[2:3], Pricing(), t=3600.0)["usd"] == 0.0
