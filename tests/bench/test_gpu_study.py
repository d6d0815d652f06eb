"""`bench/gpu_check.py --study` (issue 29) must work the first time it meets a GPU: its CPU mode
runs a real plan through `pax serve` with slots to its report, and prints what the GPU run
would: wall time, tokens/s, the dollars of one GPU for that time, a forecast of the plan."""

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import tiny_raw


def test_a_plan_scales_every_token_budget_and_what_is_counted_with_it():
    sys.path.insert(0, str(ROOT))
    from bench.gpu_study import planned_tokens, scaled_plan

    doc = yaml.safe_load((ROOT / "configs" / "plan_10m.yaml").read_text())
    s = scaled_plan(doc, 0.05)
    assert s["ranking"]["max_tokens"] == 250_000 and s["finalists"]["max_tokens"] == 1_500_000
    assert s["kill_rule"]["window_tokens"] == 50_000
    assert s["base"]["eval"]["every_tokens"] == 12_500
    assert s["base"]["optim"]["warmup_tokens"] == 12_500
    assert "budget_usd" not in s and doc["ranking"]["max_tokens"] == "5M"  # a copy
    low, high = planned_tokens(doc)
    # the LR grid's runs are counted: 15 cells x 2 seeds x 3 LRs
    assert (low, high) == (90 * 5_000_000 + 3 * 30_000_000, 90 * 5_000_000 + 12 * 30_000_000)


@pytest.mark.slow
def test_the_study_runs_a_plan_through_the_service_on_cpu(tmp_path, tokenized_dir):
    base = tiny_raw(
        tokenized_dir.parent, eval={"every_tokens": 512, "max_tokens": 1024, "profile": False}
    )
    base.pop("name")
    base.pop("max_tokens")
    plan = {
        "name": "gpu-study",
        "baseline": {"embedding_ratio": 0.35, "glu_expansion": 2.66, "vocab_size": 512,
                     "tied_lm_head": True},
        "base": base,
        "ranking": {"max_tokens": 32 * 8 * 64, "seeds": [7], "embedding_ratio": [0.35],
                    "glu_expansion": [2.66]},
        "controls": [{"name": "lr-tiny", "overrides": {"optim": {"lr": 1e-6}}}],
        "finalists": {"max_tokens": 8 * 8 * 64, "seeds": [1, 2]},
        # judged to the end: on 2 busy cores a run trains its 16k tokens in about a second, and
        # start-up differs by more, so the control can pass 90% before the baseline reaches the
        # window (CI saw it finish unkilled); it stays active through its final evals
        "kill_rule": {"margin": 0.03, "relative": True, "window_tokens": 2048,
                      "max_fraction": 1.0},
    }  # fmt: skip
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    p = subprocess.run(
        [
            sys.executable, "bench/gpu_check.py", "--device", "cpu", "--quick", "--study-only",
            "--study-plan", str(path), "--study-scale", "1", "--study-slots", "2",
            "--budget-s", "400",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads(p.stdout.strip().splitlines()[-1])["study"]
    assert "error" not in s, s
    assert s["sweep_status"] == "done" and s["report"].endswith("RESULTS.md"), s
    assert s["phases"] == ["finalists", "ranking"] and s["runs"].get("killed") == 1, s
    assert s["tokens"] > 0 and s["aggregate_tokens_per_s"] > 0
    # 2 slots on one "GPU": MPS is wanted, and its absence here is said, not fatal
    assert s["slots"] == 2 and s["mps"]["state"] == "absent", s["mps"]
    assert s["one_gpu_usd"] == pytest.approx(s["wall_s"] / 3600 * s["price_per_hour"])
    low, high = s["forecast_unscaled"]["tokens"]
    assert low == 32 * 8 * 64 * 2 + 8 * 8 * 64 * 2 and s["forecast_unscaled"]["wall_min"][0] > 0
