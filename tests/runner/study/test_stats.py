"""The study's tables: finalists' statistics, the ranking's margins in units of seed spread,
labels for sample data (issue 14: conclusions a researcher can trust)."""

import math

import pandas as pd
import pytest

from runner.release.tables_md import ablation_section, suite_note
from runner.study.report import ranking_table
from runner.study.stats import finalist_stats, mean_ci


def fin_row(cell, seed, dev, test, status="succeeded", sample=True):
    return {
        "cell": cell,
        "axis": "embedding_ratio",
        "phase": "finalists",
        "seed": seed,
        "status": status,
        "dev_word_ppl": dev,
        "test_word_ppl": test,
        "embedding_ratio": 0.35,
        "achieved_embedding_ratio": 0.3497,
        "glu_expansion": 2.66,
        "achieved_glu_expansion": 2.6641,
        "vocab_size": 16000,
        "tied_lm_head": True,
        "smallbench_macro_acc": 0.6,
        "latency_seq128_ms": 5.0,
        "sample": sample,
    }


def test_a_killed_or_unfinished_finalist_seed_never_enters_the_mean():
    rows = [
        fin_row("emb35", 1, 100.0, 104.0),
        fin_row("emb35", 2, 102.0, 106.0),
        fin_row("emb35", 3, 180.0, 190.0, status="killed"),  # truncated: not a sample
        fin_row("emb35", 4, None, None, status="running"),
    ]
    (f,) = finalist_stats(rows)
    assert f["seeds"] == 2 and f["seeds_left_out"] == 2
    # issue 28: SmallBench over seeds (model noise), not only each run's item-level SE
    assert f["smallbench_std"] == 0.0 and f["smallbench_ci95_low"] == pytest.approx(0.6)
    # issue 28: finalists are plotted on the achieved axes like every other point
    assert (f["achieved_embedding_ratio"], f["achieved_glu_expansion"]) == (0.3497, 2.6641)
    assert f["dev_ppl_mean"] == pytest.approx(101.0)
    ci = mean_ci([104.0, 106.0])
    assert f["test_ppl_mean"] == pytest.approx(105.0)
    assert (f["test_ppl_ci95_low"], f["test_ppl_ci95_high"]) == pytest.approx(
        (ci["low"], ci["high"])
    )
    assert f["sample"] is True


def test_ranking_shows_the_gap_to_the_winner_in_percent_and_in_seed_spreads():
    def r(cell, seed, ppl, axis="embedding_ratio", base=False):
        return {
            "cell": cell,
            "axis": axis,
            "is_baseline": base,
            "phase": "ranking",
            "seed": seed,
            "status": "succeeded",
            "embedding_ratio": {"a": 0.25, "b": 0.35, "c": 0.45}[cell],
            "glu_expansion": 2.66,
            "dev_word_ppl": ppl,
            "latency_seq128_ms": 5.0,
            "sample": False,
        }

    df = pd.DataFrame(
        [
            r("b", 1, 100.0, "baseline", True),
            r("b", 2, 102.0, "baseline", True),
            r("a", 1, 104.0),
            r("a", 2, 106.0),
            r("c", 1, 130.0),
        ]
    )
    t = ranking_table(df)
    t = t[t["axis"] == "embedding_ratio"].set_index("cell")
    assert list(t.index) == ["b", "a", "c"]
    assert t.loc["a", "gap_to_winner_pct"] == pytest.approx(400 / 101)
    assert t.loc["a", "gap_to_winner_spreads"] == pytest.approx(4 / math.sqrt(2))  # std 1.41
    assert t.loc["b", "gap_to_winner_spreads"] == 0
    assert not bool(t.loc["a", "sample"])


def test_the_report_and_the_release_rank_a_cell_on_its_finished_seeds():
    """Issue 28: a cell with one killed seed showed a mean that averaged in the truncated run
    (and ranked last); it ranks on the seed that trained to the end, and says how many."""
    from runner.release.facts import ranking

    def r(cell, seed, ppl, status="succeeded", base=False):
        return {
            "cell": cell, "axis": "embedding_ratio", "is_baseline": base, "phase": "ranking",
            "seed": seed, "status": status, "embedding_ratio": {"a": 0.25, "b": 0.35}[cell],
            "glu_expansion": 2.66, "dev_word_ppl": ppl, "latency_seq128_ms": 5.0,
            "sample": False,
        }  # fmt: skip

    rows = [r("b", 1, 101.0, base=True), r("a", 1, 100.0), r("a", 2, 400.0, "killed")]
    t = ranking_table(pd.DataFrame(rows))
    t = t[t["axis"] == "embedding_ratio"].set_index("cell")
    assert list(t.index) == ["a", "b"]
    assert t.loc["a", "dev_ppl"] == 100.0 and t.loc["a", "seeds"] == 1
    assert t.loc["a", "killed"] == 1 and not t.loc["a", "all_killed"]
    table = ranking(rows)["embedding_ratio"]
    assert [c["cell"] for c in table] == ["a", "b"]
    assert table[0]["dev_ppl"] == 100.0 and table[0]["seeds"] == 1 and table[0]["killed"] == 1


def ablation_cell(v, tied, share, ppl, std=1.0):
    model = {"vocab_size": v, "tied_lm_head": tied, "embedding_ratio": share}
    return {
        "axis": "ablation",
        "dev_ppl": ppl,
        "dev_ppl_std": std,
        "ppls": [ppl - std, ppl + std] if std else [ppl],
        "killed": 0,
        "all_killed": False,
        "config": {"model": model},
    }


def plan_10m():
    from runner.study.plan_spec import load_plan_text
    from tests.conftest import ROOT

    return load_plan_text((ROOT / "configs" / "plan_10m.yaml").read_text())[0]


def test_the_ablation_verdict_needs_two_surviving_shares_per_group():
    """Issue 14: with the untied groups reduced to one share (the others infeasible), the old
    verdict said "the best share moves" by construction."""
    from runner.study.promotion import ablation_findings

    cell = ablation_cell
    tied16 = [cell(16000, True, s, p) for s, p in ((0.25, 110), (0.35, 100), (0.45, 105))]
    untied = [cell(16000, False, 0.25, 120), cell(8000, False, 0.25, 125)]
    infeasible = [{"cell": "v8000-untied-emb35", "reason": "no plan within tolerances"}]
    one_group = ablation_findings(tied16 + untied, plan_10m(), infeasible)
    assert one_group["moves"] is None and one_group["summary"].startswith("undetermined")
    assert one_group["undetermined_groups"] == ["V=16000 untied", "V=8000 untied"]
    assert "the planner could not build v8000-untied-emb35" in one_group["summary"]
    tied8 = [cell(8000, True, 0.25, 101), cell(8000, True, 0.45, 108)]
    two = ablation_findings(tied16 + untied + tied8, plan_10m())
    # compared on 0.25 and 0.45 (common to both tied groups), each best by more than the noise
    assert two["common_shares"] == [0.25, 0.45]
    assert two["moves"] is True and two["best_embedding_ratio"] == {
        "V=16000 tied": 0.45,
        "V=8000 tied": 0.25,
    }
    assert "left out, under two shares: V=16000 untied, V=8000 untied" in two["summary"]


def test_the_ablation_verdict_compares_groups_on_common_shares_and_above_noise():
    """Issue 28: each group's best share was picked from a different set of feasible shares.
    With the same law in every group ("larger is better"), V=16k tied (0.25/0.35/0.45) and
    V=8k tied (0.25/0.35 only) gave 0.45 and 0.35, and the verdict read "moves"."""
    from runner.study.promotion import ablation_findings

    cell = ablation_cell
    larger_is_better = [cell(16000, True, s, p) for s, p in ((0.25, 110), (0.35, 105), (0.45, 100))]
    larger_is_better += [cell(8000, True, 0.25, 112), cell(8000, True, 0.35, 106)]
    got = ablation_findings(larger_is_better, plan_10m())
    assert got["common_shares"] == [0.25, 0.35]
    assert got["best_embedding_ratio"] == {"V=16000 tied": 0.35, "V=8000 tied": 0.35}
    assert got["moves"] is False and "does not move" in got["summary"]
    # bests that differ by less than the seed noise are not a move either
    noisy = [cell(16000, True, 0.25, 100, std=4), cell(16000, True, 0.35, 101, std=4)]
    noisy += [cell(8000, True, 0.25, 101, std=4), cell(8000, True, 0.35, 100, std=4)]
    got = ablation_findings(noisy, plan_10m())
    assert got["moves"] is False and "within the seed noise" in got["summary"]
    assert got["groups"]["V=8000 tied"]["clear"] is False
    # one seed: no spread to tell a move from noise; its noise is unknown, not zero (the demo's
    # table read "2,254.16 vs noise 0.00 (within noise)")
    single = [cell(16000, True, 0.25, 90, std=0), cell(16000, True, 0.35, 100, std=0)]
    single += [cell(8000, True, 0.25, 100, std=0), cell(8000, True, 0.35, 90, std=0)]
    got = ablation_findings(single, plan_10m())
    assert got["moves"] is False and "with one seed their noise is unknown" in got["summary"]
    assert got["groups"]["V=8000 tied"]["noise"] is None
    text = "\n".join(ablation_section({"promotion": {"ablation": got}}))
    assert "| 10, noise unknown (one seed) |" in text and "vs noise" not in text
    same = ablation_findings(
        single[:2] + [cell(8000, True, 0.25, 90, std=0), cell(8000, True, 0.35, 100, std=0)],
        plan_10m(),
    )
    assert same["summary"].startswith(
        "the best embedding share does not move with vocab size or tying (one seed: its noise"
    )
    # with seeds, the table gives the noise it compared against
    text = "\n".join(
        ablation_section({"promotion": {"ablation": ablation_findings(noisy, plan_10m())}})
    )
    assert "| 1 vs noise 8.00 (within noise) |" in text


def test_every_report_places_runs_beside_the_ngram_and_flags_worse_ones():
    from runner.study.report import reference_table

    df = pd.DataFrame(
        [
            {"name": "good", "phase": "ranking", "params_total": 10, "dev_word_ppl": 90.0},
            {"name": "bad", "phase": "ranking", "params_total": 10, "dev_word_ppl": 130.0},
        ]
    )
    ngram = {"model": "KN3", "dev_word_ppl": 120.0, "test_word_ppl": 115.0, "sample": True}
    t = reference_table(df, ngram).set_index("model")
    assert t.loc["KN3", "kind"].startswith("n-gram")
    assert not t.loc["good", "worse_than_ngram"] and t.loc["bad", "worse_than_ngram"]
    assert "literature" not in set(t["kind"])  # never beside sample data
    assert t["sample"].all()
    real = reference_table(df, {**ngram, "sample": False})
    anchor = real[real["kind"] == "literature"].iloc[0]
    assert (anchor["dev_word_ppl"], anchor["test_word_ppl"]) == (68.6, 65.8)


def _hits(rate: float, n: int, offset: int = 0) -> str:
    """n pairs of which about `rate` are right, spread evenly."""
    return "".join("1" if ((i + offset) * rate) % 1 + rate >= 1 else "0" for i in range(n))


def test_the_smallbench_bootstrap_holds_seed_noise_that_the_item_se_leaves_out():
    """Issue 28: seven untrained inits scored macro 0.44 to 0.61 while each run's binomial
    SE read 0.011. Seeds that disagree widen the bootstrap over seeds and items far past one
    seed's items-only spread; identical seeds leave it at the items-only spread."""
    from runner.study.stats import smallbench_bootstrap

    tasks = ("a", "b", "c")
    spread = [{t: _hits(r, 200, k) for t in tasks} for k, r in enumerate((0.61, 0.50, 0.44))]
    one = smallbench_bootstrap(spread[:1])
    seeds = smallbench_bootstrap(spread)
    same = smallbench_bootstrap([spread[0]] * 3)
    assert one["seeds"] == 1 and seeds["seeds"] == 3
    assert seeds["se"] > 2 * one["se"]
    assert seeds["low"] < 0.50 < seeds["high"]
    assert same["se"] == pytest.approx(one["se"], rel=0.35)
    assert smallbench_bootstrap(spread) == seeds  # a fixed seed: the same report every time
    assert smallbench_bootstrap([None, {}])["se"] is None


def test_finalists_carry_the_bootstrap_and_their_place_against_the_untrained_band():
    rows = []
    for seed, acc, rate in ((1, 0.56, 0.56), (2, 0.57, 0.57), (3, 0.55, 0.55)):
        r = fin_row("emb35", seed, 100.0 + seed, 110.0, sample=False)
        r.update(
            smallbench_macro_acc=acc,
            smallbench_hits={"a": _hits(rate, 100)},
            smallbench_untrained_mean=0.53,
            smallbench_untrained_sd=0.057,
            smallbench_unigram_acc=0.58,
        )
        rows.append(r)
    (f,) = finalist_stats(rows)
    assert f["smallbench_boot_seeds"] == 3 and f["smallbench_boot_se"] > 0
    assert f["smallbench_boot_low"] < f["smallbench_mean"] < f["smallbench_boot_high"]
    # 0.56 lies inside 0.53 +/- 2 x 0.057: indistinguishable from an untrained model
    assert f["smallbench_vs_untrained"] == "inside"
    assert f["smallbench_unigram_acc"] == 0.58
    for r in rows:
        r["smallbench_macro_acc"] = 0.70
    assert finalist_stats(rows)[0]["smallbench_vs_untrained"] == "above"
    # the report says which paradigms SmallBench means when it is not the study's 9
    assert f["smallbench_suite"] is None and suite_note([f]) == ""
    for r in rows:
        r["smallbench_suite"] = "all"
    assert "every BLiMP paradigm" in suite_note(finalist_stats(rows))
