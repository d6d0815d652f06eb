"""Learning-rate schedules: cosine, and warmup-stable-decay that can stop anywhere."""

import json

import pytest

from tests.helpers import tiny_raw
from trainer.config import validate
from trainer.schedule import lr_at, wsd_decay
from trainer.train import train

KW = {"lr": 1.0, "warmup_steps": 10, "total_steps": 100, "min_lr_ratio": 0.1}


def test_cosine_stopped_early_is_not_annealed():
    """Issue 14: cosine over 30M tokens stopped at 8M leaves the LR at 86% of its peak."""
    lr = lr_at(
        8_000_000 // 4096, lr=1.0, warmup_steps=0, total_steps=30_000_000 // 4096, min_lr_ratio=0.1
    )
    assert lr == pytest.approx(0.86, abs=0.01)


def test_wsd_holds_the_peak_then_decays_linearly_to_the_floor():
    wsd = {**KW, "schedule": "wsd", "decay_fraction": 0.2}
    assert lr_at(5, **wsd) == pytest.approx(0.6)  # warmup
    assert lr_at(10, **wsd) == lr_at(79, **wsd) == 1.0  # stable
    assert lr_at(90, **wsd) == pytest.approx(1 - 0.9 * 10 / 19)  # down from step 80 ...
    assert lr_at(99, **wsd) == lr_at(150, **wsd) == pytest.approx(0.1)  # ... to the last


def test_wsd_early_stop_decays_over_a_fraction_of_the_steps_so_far():
    wsd = {**KW, "total_steps": 1000, "schedule": "wsd", "decay_fraction": 0.2}
    assert wsd_decay(1000, 0.2, 50) == (50, 60)
    assert lr_at(49, **wsd, decay_start=50) == 1.0
    assert lr_at(55, **wsd, decay_start=50) == pytest.approx(0.5)
    assert lr_at(59, **wsd, decay_start=50) == pytest.approx(0.1)
    assert wsd_decay(1000, 0.2, 990) == (990, 1000)  # never past the budget


def test_an_early_stopped_wsd_run_anneals_before_it_ends(tmp_path, tokenized_dir):
    raw = tiny_raw(
        tokenized_dir.parent,
        max_tokens=400 * 8 * 64,
        optim={"schedule": "wsd", "decay_fraction": 0.25, "lr": 3e-2},
        # patience 1: stops at the first eval that is not a new best (early, at high LR)
        eval={"every_tokens": 2 * 8 * 64, "early_stop_patience": 1, "max_tokens": 512},
        checkpoint={"every_steps": 0},
    )
    code, m = train(validate(raw), tmp_path / "w", progress=False)
    assert code == 0 and m["run"]["status"] == "succeeded"
    assert "short wsd decay" in m["run"]["exit_reason"], m["run"]["exit_reason"]
    log = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    decay = [e for e in log if e["event"] == "decay"]
    assert len(decay) == 1
    start, until = decay[0]["step"], decay[0]["until"]
    assert until == start + round(0.25 * start) and m["training"]["steps"] == until < 400
    # the logged LR of step s is the one its update used, lr_at(s - 1)
    lrs = {e["step"]: e["lr"] for e in log if e["event"] == "train"}
    assert lrs[start] == pytest.approx(3e-2)  # the stable LR when the stop was called
    decaying = [lrs[s] for s in range(start + 1, until + 1)]
    assert decaying == sorted(decaying, reverse=True)
    assert decaying[-1] == pytest.approx(3e-2 * 0.1)  # the last update at the floor
