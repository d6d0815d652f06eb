"""The LR grid (issue 28): the share and GLU axes move depth (24 to 6 layers) and width, yet
every cell trained at LR 3e-3, so a "best share" could not be told from a "best fit to 3e-3".
With `ranking.lr_grid`, each shape trains at every multiplier and ranks at its best."""

import json
from types import SimpleNamespace

import pytest

from runner.release.tables_md import lr_curve
from runner.study.forecast import phases
from runner.study.plan_spec import Finalists, cells, load_plan_text, split_lr
from runner.study.promotion import at_best_lr, choose, lr_choice, rank_cells
from trainer.config import ConfigError

PLAN = """
name: grid
base: {optim: {lr: 2.0e-3}}
ranking: {max_tokens: 4096, seeds: [1], embedding_ratio: [0.25, 0.35], glu_expansion: [],
          lr_grid: [0.5, 1, 2]}
controls: [{name: tiny, overrides: {optim: {lr: 1.0e-6}}}]
"""


def test_every_shape_trains_at_every_multiplier_and_only_the_base_lr_is_the_baseline():
    plan, _ = load_plan_text(PLAN)
    got = {c["cell"]: c for c in cells(plan)}
    assert sorted(got) == sorted([
        "baseline", "baseline-lr0.5x", "baseline-lr2x", "emb25", "emb25-lr0.5x", "emb25-lr2x",
        "control-tiny",
    ])  # fmt: skip
    assert got["emb25-lr2x"]["extra"] == {"optim": {"lr": 4.0e-3}}
    assert got["emb25-lr0.5x"]["model"] == got["emb25"]["model"]
    assert got["baseline"]["is_baseline"] and not got["baseline-lr2x"]["is_baseline"]
    assert got["baseline-lr2x"]["axis"] == "baseline"
    assert got["control-tiny"]["extra"] == {"optim": {"lr": 1.0e-6}}  # controls: no grid
    assert split_lr("emb25-lr0.5x") == ("emb25", 0.5) and split_lr("v8000-untied-emb25") == (
        "v8000-untied-emb25",
        1.0,
    )
    # the forecast counts the grid's runs
    assert phases(plan, "plan")[0]["runs"] == (7, 7)


@pytest.mark.parametrize(
    "grid,field",
    [("[0.5, 2]", "must hold 1"), ("[1, 1, 2]", "repeats"), ("[0, 1]", "greater than 0")],
)
def test_a_grid_without_the_base_lr_is_refused_naming_the_field(grid, field):
    with pytest.raises(ConfigError) as e:
        load_plan_text(PLAN.replace("[0.5, 1, 2]", grid))
    assert "lr_grid" in str(e.value) and field in str(e.value)


def _run(rid, cell, status="succeeded", lr=3e-3, baseline=False):
    return SimpleNamespace(
        id=rid, cell=cell, name=cell, status=status, axis="baseline" if baseline else
        "embedding_ratio", is_baseline=baseline and split_lr(cell)[1] == 1.0,
        spec_json=json.dumps({"optim": {"lr": lr}}), plan_json=None,
    )  # fmt: skip


def test_a_shape_ranks_at_its_best_lr_and_its_finalists_train_at_it():
    """At the base LR alone `emb25` (deep, narrow) trails the baseline; at 2x it leads: the
    ranking without the grid measured the fit to one LR, not the share."""
    runs = [
        _run(1, "baseline", baseline=True), _run(2, "baseline-lr0.5x", lr=1.5e-3, baseline=True),
        _run(3, "baseline-lr2x", lr=6e-3, baseline=True),
        _run(4, "emb25"), _run(5, "emb25-lr0.5x", "killed", lr=1.5e-3),
        _run(6, "emb25-lr2x", lr=6e-3),
    ]  # fmt: skip
    ppl = {1: 100.0, 2: 104.0, 3: 120.0, 4: 110.0, 5: 300.0, 6: 95.0}
    results = {k: {"dev": {"word_ppl": v}} for k, v in ppl.items()}
    without = rank_cells([r for r in runs if split_lr(r.cell)[1] == 1.0], results)
    assert [c["cell"] for c in without] == ["baseline", "emb25"]
    ranked = rank_cells(runs, results)
    assert [c["cell"] for c in ranked] == ["emb25", "baseline"]
    emb25, base = ranked
    assert emb25["lr_mult"] == 2.0 and emb25["config"]["optim"]["lr"] == 6e-3
    assert emb25["dev_ppl"] == 95.0 and emb25["killed"] == 0  # the killed 0.5x is its curve
    assert [(p["mult"], p["killed"]) for p in emb25["lr_curve"]] == [
        (0.5, True), (1.0, False), (2.0, False)]  # fmt: skip
    assert base["is_baseline"] and base["lr_mult"] == 1.0
    picks, _ = choose(ranked, Finalists())
    assert picks[0]["cell"] == "emb25" and picks[0]["config"]["optim"]["lr"] == 6e-3


def test_results_rows_are_shown_at_each_shapes_best_lr():
    rows = [
        {
            "cell": "baseline",
            "phase": "ranking",
            "status": "succeeded",
            "dev_word_ppl": 100.0,
            "is_baseline": True,
        },
        {
            "cell": "baseline-lr2x",
            "phase": "ranking",
            "status": "succeeded",
            "dev_word_ppl": 97.0,
            "is_baseline": False,
        },
        {"cell": "emb25", "phase": "ranking", "status": "succeeded", "dev_word_ppl": 110.0},
        {"cell": "emb25-lr2x", "phase": "ranking", "status": "succeeded", "dev_word_ppl": 95.0},
        {"cell": "emb25", "phase": "finalists", "status": "succeeded", "dev_word_ppl": 90.0},
    ]
    out = at_best_lr(rows)
    assert [(r["cell"], r["phase"], r["dev_word_ppl"]) for r in out] == [
        ("baseline", "ranking", 97.0), ("emb25", "ranking", 95.0),
        ("emb25", "finalists", 90.0)]  # fmt: skip
    assert out[1]["lr_mult"] == 2.0
    # the baseline's shape stays the baseline at its best LR (2x here)
    assert out[0]["is_baseline"] is True and not out[1]["is_baseline"]
    # without a grid, rows pass through as they are
    assert at_best_lr(rows[:1]) == rows[:1]
    # every LR killed: the least bad ranks, marked killed
    c = lr_choice([("a", "killed", 300.0), ("a-lr2x", "killed", 250.0)])["a"]
    assert c["mult"] == 2.0 and all(p["killed"] for p in c["curve"])


def test_the_ranking_table_shows_the_chosen_lr_and_the_curve():
    curve = [{"mult": 0.5, "dev_ppl": None, "killed": True},
             {"mult": 1.0, "dev_ppl": 110.04, "killed": False},
             {"mult": 2.0, "dev_ppl": 95.0, "killed": False}]  # fmt: skip
    assert lr_curve({"lr_curve": curve}) == "0.5x killed · 1x 110.0 · **2x 95.0**"
    assert lr_curve({}) == "-"
