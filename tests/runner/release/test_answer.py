"""The answer and limitations of RESULTS.md / SUMMARY.md, from facts built by hand (issue 28:
honest read-outs): test in the headline beside dev, saying dev chose it; the n-gram reference
in a sentence; the ranking's seeds as they were."""

from runner.release.markdown import answer, limitations


def finalist(cell, dev, test, seeds=3):
    return {
        "cell": cell, "embedding_ratio": 0.45, "glu_expansion": 2.66, "seeds": seeds,
        "dev_ppl_mean": dev, "dev_ppl_ci95_low": dev - 10, "dev_ppl_ci95_high": dev + 10,
        "test_ppl_mean": test, "test_ppl_ci95_low": test - 12, "test_ppl_ci95_high": test + 12,
    }  # fmt: skip


def facts(**kw):
    f = {
        "finalists": [finalist("emb45", 500.0, 520.0), finalist("glu2x", 560.0, 580.0)],
        "ngram": {"model": "Kneser-Ney trigram", "dev_word_ppl": 100.0, "test_word_ppl": 110.0},
        "plan": {"base": {"model": {"total_params": 10_000_000}}, "baseline": {}},
        "rows": [
            {"phase": "ranking", "seed": 1, "max_tokens": 5_000_000},
            {"phase": "ranking", "seed": 2, "max_tokens": 5_000_000},
            {"phase": "finalists", "seed": 1, "max_tokens": 30_000_000},
        ],
        "finalist_runs": [],
        "sample": False,
    }
    return {**f, **kw}


def test_the_answer_gives_test_with_its_interval_and_says_dev_chose():
    text = answer(facts())
    assert "on test, 520.0 ± 12.0 [508.0, 532.0]" in text
    assert "Dev chose it" in text and "test chose nothing" in text
    assert "its 95% interval lies below" in text.lower()


def test_the_answer_says_how_the_best_compares_with_the_ngram_reference():
    assert "5.0x worse than a Kneser-Ney trigram on the same splits" in answer(facts())
    better = facts(ngram={"model": "Kneser-Ney trigram", "dev_word_ppl": 1000.0})
    assert "2.0x better than a Kneser-Ney trigram" in answer(better)
    assert "For scale" not in answer(facts(ngram=None))


def test_the_limitations_say_how_many_seeds_the_ranking_ran():
    text = "\n".join(limitations(facts()))
    assert "ranking cells 2 each" in text and "mostly one" not in text


def test_the_runner_up_is_compared_seed_by_seed():
    """Issue 28: runs with the same seed see the same batches; the answer compared unpaired
    intervals, which carry the data-order noise pairing removes."""

    def fin_row(cell, seed, ppl):
        return {"phase": "finalists", "status": "succeeded", "cell": cell, "seed": seed,
                "dev_word_ppl": ppl, "max_tokens": 1}  # fmt: skip

    # unpaired the intervals overlap (seed noise of +-20); paired, glu2x is worse every time
    rows = [fin_row("emb45", s, 500.0 + 20 * (s - 2)) for s in (1, 2, 3)]
    rows += [fin_row("glu2x", s, 505.0 + 20 * (s - 2) + (s % 2)) for s in (1, 2, 3)]
    f = facts(
        finalists=[finalist("emb45", 500.0, 520.0), finalist("glu2x", 505.3, 530.0)], rows=rows
    )
    text = answer(f)
    assert "over 3 paired seeds" in text and "the ranking holds" in text
    flat = [fin_row("glu2x", s, 500.0 + 20 * (s - 2) + (-3, 0, 3)[s - 1]) for s in (1, 2, 3)]
    text = answer(facts(rows=rows[:3] + flat))
    assert "do not separate" in text


def test_each_ranking_cell_shows_its_depth_width_and_non_embedding_parameters():
    """Issue 28: the share and GLU axes move depth from 24 to 6 layers and width from 160 to
    280; the tables now say so beside each cell."""
    from runner.release.facts import ranking
    from runner.release.tables_md import ranking_section
    from runner.study.results import row
    from trainer.params import plan as solve

    p = solve(10_000_000, 0.35, 2.66, 16000, True)
    plan = {**p.__dict__}
    r = row(
        config={"name": "baseline", "model": {"embedding_ratio": 0.35}}, plan=plan, metrics=None
    )
    assert r["non_embedding_params"] == p.attention + p.ffn + p.norm
    r.update(cell="baseline", axis="baseline", is_baseline=True, phase="ranking",
             status="succeeded", dev_word_ppl=100.0, latency_seq128_ms=1.0)  # fmt: skip
    text = "\n".join(ranking_section({"ranking": ranking([r])}))
    assert "layers x width" in text and f"{p.n_layers} x {p.d_model}" in text
    assert f"{p.attention + p.ffn + p.norm:,}" in text


def test_the_answer_reads_smallbench_against_the_untrained_band_and_a_unigram():
    """Issue 28: the example finalists' 0.568 lay inside the untrained range, and nothing said
    so. The demo's best now scores above the band, but not above a unigram model."""
    best = finalist("emb45", 500.0, 520.0)
    best.update(smallbench_mean=0.577, smallbench_boot_low=0.555, smallbench_boot_high=0.599,
                smallbench_untrained_mean=0.483, smallbench_untrained_sd=0.0255,
                smallbench_vs_untrained="above", smallbench_unigram_acc=0.579)  # fmt: skip
    text = answer(facts(finalists=[best]))
    assert "SmallBench it scores 0.577 [0.555, 0.599], above the band of untrained models" in text
    assert "(0.483 ± 0.051)" in text
    assert "not above a unigram model of the training tokens (0.579)" in text
    assert "no evidence of learned grammar" in text
    best.update(smallbench_mean=0.52, smallbench_vs_untrained="inside", smallbench_unigram_acc=0.4,
                smallbench_boot_low=0.50, smallbench_boot_high=0.54)  # fmt: skip
    text = answer(facts(finalists=[best]))
    assert "inside the band" in text and "above a unigram" in text
    assert "no evidence of learned grammar" in text  # inside the band says it alone
    best.update(smallbench_vs_untrained=None)
    assert "SmallBench" not in answer(facts(finalists=[best]))


def test_the_ranking_shows_the_annealed_model_beside_the_best_interval_eval():
    """Issue 28: the scored model is the one at the end of the schedule (annealed under wsd);
    the best interval checkpoint stays a column beside it. RESULTS.md had only one PPL, so a
    reader could not see which model was scored."""
    from runner.release.facts import ranking
    from runner.release.tables_md import ranking_section
    from runner.study.results import row

    rows = []
    for seed, end, best in ((1, 3548.0, 3912.0), (2, 3600.0, 3950.0)):
        r = row(config={"name": "baseline", "model": {"embedding_ratio": 0.35}}, plan={},
                metrics=None)  # fmt: skip
        r.update(cell="baseline", axis="baseline", is_baseline=True, phase="ranking", seed=seed,
                 status="succeeded", dev_word_ppl=end, best_interval_dev_word_ppl=best,
                 latency_seq128_ms=1.0)  # fmt: skip
        rows.append(r)
    text = "\n".join(ranking_section({"ranking": ranking(rows)}))
    header = next(line for line in text.splitlines() if line.startswith("| rank"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    line = next(line for line in text.splitlines() if "`baseline`" in line)
    values = [c.strip() for c in line.strip("|").split("|")]
    assert values[cells.index("dev PPL")] == "3,574.0"  # the annealed model, mean of 2 seeds
    assert values[cells.index("best interval")] == "3,931.0"
    assert "end of its decay" in text
