"""The study forecast on N workers x M slots (issue 27): what a plan costs and how long it
takes before anything is launched, against one managed job per run. Numbers worked by hand
from the price table so that a change in the model shows."""

import pytest

from runner.cost import Pricing
from runner.study.forecast import packing_speedup, study_forecast
from runner.study.plan_spec import load_plan_text
from tests.conftest import ROOT
from tests.runner.conftest import in_process

PLAN = """
name: tiny-study
ranking: {max_tokens: 1800000, seeds: [1], embedding_ratio: [0.35], glu_expansion: [2.66, 4.0]}
finalists: {max_tokens: 3600000, seeds: [1, 2], top_k: 1}
budget_usd: 5
"""


def pricing() -> Pricing:
    p = Pricing()
    p.table = {
        **p.table,
        "startup_overhead_s": 300,
        "jobs_controller": {"usd_per_h": 0.36, "autostop_s": 600},
        "packing": {"speedup": {1: 1.0, 2: 1.5, 4: 2.0}},
        "accelerators": {"X1": {"on_demand": 4.0, "spot": 1.8, "tokens_per_s": 1000}},
    }
    return p


def test_packing_is_interpolated_between_measured_points_and_flat_past_the_last():
    p = pricing()
    assert packing_speedup(p, 1) == 1.0
    assert packing_speedup(p, 3) == pytest.approx(1.75)
    assert packing_speedup(p, 8) == 2.0
    assert packing_speedup(Pricing(), 4) == pytest.approx(3.76)  # the shipped H200 measurement


def test_a_plan_on_workers_by_hand():
    plan, kind = load_plan_text(PLAN)
    f = study_forecast(pricing(), plan, kind, accelerator="X1", workers=1, slots=2, idle_exit_s=0)
    # ranking: baseline + glu4x = 2 runs of 1.8M tokens; 2 slots at 1.5x: 750 tokens/s each
    # -> 2,400 s side by side. Finalists: low 1 cell x 2 seeds of 3.6M -> 4,800 s; high
    # 2 axes x 2 cells x 2 seeds = 8 runs -> 4 waves of 4,800 s.
    low, high = f["workers_forecast"]["low"], f["workers_forecast"]["high"]
    assert [p["runs"] for p in low["phases"]] == [2, 2] and high["phases"][1]["runs"] == 8
    assert low["wall_s"] == pytest.approx(300 + 2400 + 4800)
    assert high["wall_s"] == pytest.approx(300 + 2400 + 4 * 4800)
    assert low["vm_usd"] == pytest.approx(7500 / 3600 * 1.8)
    assert low["controller_usd"] == pytest.approx((7500 + 600) / 3600 * 0.36)
    assert low["usd"] == pytest.approx(low["vm_usd"] + low["controller_usd"])
    # one job per run (8 at a time): each its own start-up, alone on its GPU at 1,000 tokens/s
    per_run = f["one_job_per_run"]["low"]
    assert per_run["gpu_hours"] == pytest.approx((2 * (300 + 1800) + 2 * (300 + 3600)) / 3600)
    assert per_run["wall_s"] == pytest.approx((300 + 1800) + (300 + 3600))
    assert f["budget_usd"] == 5 and "whole budget" in f["upper_bound"]


def test_idle_workers_are_paid_until_they_leave():
    plan, kind = load_plan_text(PLAN)
    two = study_forecast(
        pricing(), plan, kind, accelerator="X1", workers=2, slots=1, idle_exit_s=600
    )
    low = two["workers_forecast"]["low"]
    # each worker: start-up, its one ranking run (1,800 s), one finalist (3,600 s), then 600 s idle
    assert low["gpu_hours"] == pytest.approx(2 * (300 + 1800 + 3600 + 600) / 3600)
    assert low["wall_s"] == pytest.approx(300 + 1800 + 3600)  # the report does not wait for idle


def test_the_api_prices_a_plan_and_names_a_gpu_it_cannot(tmp_path):
    with in_process(tmp_path) as svc:
        r = svc.post(
            "/cloud/forecast?gpu=H100&workers=2&slots=4",
            content=(ROOT / "configs" / "plan_10m.yaml").read_text(),
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 200, r.text
        f = r.json()
        assert (
            f["accelerator"] == "H100" and f["spot"] and f["packing_speedup"] == pytest.approx(3.76)
        )
        # the 10M study: 30 ranking shapes x a 3-point LR grid = 90 runs, 3-12 finalists; warm
        # workers cost less than a VM a run
        assert [p["runs"] for p in f["workers_forecast"]["high"]["phases"]] == [90, 12]
        for k in ("low", "high"):
            assert f["workers_forecast"][k]["usd"] < f["one_job_per_run"][k]["usd"] < 50
        r = svc.post(
            "/cloud/forecast?gpu=TPU9", content=PLAN, headers={"Content-Type": "application/yaml"}
        )
        assert r.status_code == 422 and "gpu" in r.text and "TPU9" in r.text
        r = svc.post(
            "/cloud/forecast?gpu=H100",
            content="name: [",
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 422 and "plan" in r.text


def test_a_worker_done_early_waits_for_the_next_phase():
    """Promotion comes when the whole ranking is done: a worker whose slots emptied first is
    still up (and paid) until then, not only while it trained."""
    plan, kind = load_plan_text(
        PLAN.replace("glu_expansion: [2.66, 4.0]", "glu_expansion: [2.66, 4.0, 2.0]")
    )
    f = study_forecast(pricing(), plan, kind, accelerator="X1", workers=2, slots=1, idle_exit_s=0)
    low = f["workers_forecast"]["low"]
    # ranking: 3 runs of 1,800 s on 2 workers -> 3,600 s, both up throughout; finalists: 2 runs
    # of 3,600 s, one each
    assert low["phases"][0]["wall_s"] == pytest.approx(3600)
    assert low["gpu_hours"] == pytest.approx(2 * (300 + 3600 + 3600) / 3600)
