"""RESULTS.md, SUMMARY.md and the model cards, rendered from `facts.gather` alone: pure
functions of the facts, so the same ledger gives the same text (the `Generated` line aside)."""

from __future__ import annotations

import math

from runner.release.md_format import (
    SAMPLE_NOTE,
    ci,
    num,
    table,
    text,
)
from runner.release.tables_md import (
    ablation_section,
    band_text,
    finalists_section,
    pareto_section,
    partial,
    ranking_section,
)
from runner.study.stats import paired_difference


def title(f: dict, what: str) -> str:
    return f"# {what}: sweep {f['sweep']['id']} ({text(f['sweep']['name'])})" + (
        " [SAMPLE]" if f["sample"] else ""
    )


def budget(f: dict) -> str:
    m = (f["plan"].get("base") or {}).get("model") or {}
    b = f["plan"].get("baseline") or {}
    total = (
        num(m["total_params"])
        if isinstance(m.get("total_params"), int)
        else text(m.get("total_params", "?"))
    )
    tied = "tied" if b.get("tied_lm_head", True) else "untied"
    return f"{total} parameters (V={b.get('vocab_size', '?')}, {tied} head)"


def question(f: dict) -> str:
    return (
        f"How should a fixed budget of {budget(f)} be split inside a small Llama-style language "
        "model: what share should the embedding take, and how wide should the SwiGLU be?"
    )


def answer(f: dict) -> str:
    """Two sentences: the best finalist, then whether the data separate it from the next."""
    fins = [x for x in f["finalists"] if math.isfinite(x["dev_ppl_mean"])]
    if not fins:
        return "Undetermined: no finalist finished, so no configuration can be recommended."
    best = fins[0]
    test = ci(best["test_ppl_mean"], best["test_ppl_ci95_low"], best["test_ppl_ci95_high"])
    first = (
        f"Of the finalists, `{best['cell']}` (embedding share {num(best['embedding_ratio'])}, "
        f"SwiGLU expansion {num(best['glu_expansion'])}) reached the lowest dev word-level "
        f"PPL, {ci(best['dev_ppl_mean'], best['dev_ppl_ci95_low'], best['dev_ppl_ci95_high'])} "
        f"over {best['seeds']} seeds; on test, {test}. Dev chose it (and every checkpoint, "
        "stop and promotion before it); test chose nothing."
    )
    first += ngram_sentence(f, best) + smallbench_sentence(best)
    if len(fins) < 2:
        return first + " It was the only finalist, so it is compared with nothing."
    nxt = fins[1]
    paired = paired_difference(f.get("rows") or [], best["cell"], nxt["cell"])
    if paired["n"] >= 2:
        d = ci(paired["mean"], paired["low"], paired["high"])
        held = paired["low"] > 0
        second = (
            f"Seed by seed (the same seeds see the same batches), the runner-up "
            f"`{nxt['cell']}` is worse by {d} dev PPL over {paired['n']} paired seeds, "
            + ("so the ranking holds at these seeds." if held
               else "an interval that includes no difference: the data do not separate the two.")
        )  # fmt: skip
    elif not math.isfinite(best["dev_ppl_ci95_high"]) or not math.isfinite(nxt["dev_ppl_ci95_low"]):
        second = f"Against `{nxt['cell']}` the spread is unknown (one seed): undetermined."
    elif best["dev_ppl_ci95_high"] < nxt["dev_ppl_ci95_low"]:
        second = (
            f"Its 95% interval lies below that of the runner-up `{nxt['cell']}` "
            f"({num(nxt['dev_ppl_mean'], 1)}), so the ranking holds at these seeds."
        )
    else:
        second = (
            f"Its 95% interval overlaps that of the runner-up `{nxt['cell']}` "
            f"({num(nxt['dev_ppl_mean'], 1)}), so the data do not separate the two."
        )
    return f"{first} {second}"


def smallbench_sentence(best: dict) -> str:
    """SmallBench in one sentence, read against what needs no grammar: the untrained band of
    the same shape and a unigram model (the sample's finalists scored inside the one or below
    the other)."""
    score, vs = best.get("smallbench_mean"), best.get("smallbench_vs_untrained")
    if not isinstance(score, (int, float)) or not math.isfinite(score) or vs is None:
        return ""
    lo, hi = best.get("smallbench_boot_low"), best.get("smallbench_boot_high")
    interval = f" [{num(lo, 3)}, {num(hi, 3)}]" if lo is not None and hi is not None else ""
    out = (
        f" On the held-out SmallBench it scores {num(score, 3)}{interval}, {vs} the band of "
        f"untrained models of its shape ({band_text(best)})"
    )
    uni = best.get("smallbench_unigram_acc")
    if isinstance(uni, (int, float)) and math.isfinite(uni):
        beats = lo is not None and lo > uni
        out += (
            f", and {'above' if beats else 'not above'} a unigram model of the training "
            f"tokens ({num(uni, 3)})"
        )
        if not beats or vs != "above":
            out += ": no evidence of learned grammar beyond token frequency and length"
    return out + "."


def ngram_sentence(f: dict, best: dict) -> str:
    """The count-based reference in one sentence, so the answer says how good the best is."""
    g = f.get("ngram")
    if not g or not g.get("dev_word_ppl") or not math.isfinite(best["dev_ppl_mean"]):
        return ""
    ratio = best["dev_ppl_mean"] / g["dev_word_ppl"]
    how = (
        f"{num(ratio, 1)}x worse than" if ratio >= 1.05
        else f"{num(1 / ratio, 1)}x better than" if ratio <= 1 / 1.05
        else "level with"
    )  # fmt: skip
    article = "an" if str(g["model"])[:1].lower() in "aeiou" else "a"
    return (
        f" For scale, it is {how} {article} {g['model']} on the same splits (dev word PPL "
        f"{num(g['dev_word_ppl'], 1)})."
    )


def cost_section(f: dict) -> list[str]:
    c = f["cost"]
    lines = ["## Cost per phase: forecast vs actual", ""]
    speed = f"{num(c['tokens_per_s'], 0)} tokens/s measured" if c["tokens_per_s"] else "no speed"
    lines += [
        f"On {c['accelerator']} ({speed}). Forecast: the phase's planned tokens at that speed, "
        f"priced by the same table as the charges. Budget: {num(c['budget_usd'])} $; "
        f"spent {num(c['spent_usd'])} $ ({num(c['gpu_hours'], 3)} GPU-hours).",
        "",
    ]
    return lines + table(
        ["phase", "runs", "planned tokens", "forecast hours", "forecast $", "GPU-hours", "$"],
        [
            [p["phase"], p["runs"], num(p["planned_tokens"]), num(p["forecast_hours"], 3),
             num(p["forecast_usd"]), num(p["gpu_hours"], 3), num(p["usd"])]
            for p in c["phases"]
        ],
    )  # fmt: skip


def kills_section(f: dict) -> list[str]:
    lines = ["## Kills and their evidence", ""]
    if not f["kills"]:
        return [*lines, "No run was killed.", ""]
    for k in f["kills"]:
        lines.append(f"- run {k['run_id']} (`{k['name']}`): {text(k['reason'])}")
        if k["gap_relative"] is not None:
            sig = k["gap_sigmas"]
            lines.append(
                f"  - gap at the last point: {100 * k['gap_relative']:+.1f}% of the baseline"
                + (f", {sig:.1f} seed sigma" if sig is not None else " (one baseline seed)")
                + f"; margin used {num(k['margin_used'])} PPL"
            )
        if k["run"] and k["baseline"]:
            pts = ", ".join(f"{t:,}: {v:.1f}" for t, v in k["run"])
            base = ", ".join(f"{t:,}: {v:.1f}" for t, v in k["baseline"])
            lines.append(f"  - run (tokens: dev PPL): {pts}")
            lines.append(f"  - baseline run {k['baseline_run']}: {base}")
    return [*lines, ""]


def reference_section(f: dict) -> list[str]:
    lines = ["## Reference: a count-based model on the same splits", ""]
    g = f["ngram"]
    if not g:
        return [*lines, "The n-gram reference is not available (its data folder is not here).", ""]
    best = f["finalists"][0] if f["finalists"] else None
    rows = [[g["model"] + (" [SAMPLE]" if g.get("sample") else ""), num(g["dev_word_ppl"], 1),
             num(g["test_word_ppl"], 1)]]  # fmt: skip
    if best:
        rows.append([f"best finalist `{best['cell']}` (mean)", num(best["dev_ppl_mean"], 1),
                     num(best["test_ppl_mean"], 1)])  # fmt: skip
    return lines + table(["model", "dev word PPL", "test word PPL"], rows)


def figure(name: str, alt: str) -> str:
    return f"![{alt}](plots/{name}.png)"


def figures_section(f: dict, plots: dict[str, str]) -> list[str]:
    lines = ["## Figures", "", "300 dpi PNG and SVG in `plots/`; achieved values on the axes.", ""]
    for key, alt in FIGURES:
        if plots.get(key):
            lines += [f"### {alt}", "", figure(plots[key], alt), ""]
    return lines


FIGURES = [
    ("embedding", "dev PPL vs embedding share"),
    ("glu", "dev PPL vs SwiGLU expansion"),
    ("pareto", "latency vs PPL, finalists, with the Pareto front"),
    ("curves", "learning curves of the finalists"),
]


def provisional(f: dict) -> list[str]:
    s = f["sweep"]
    if s["status"] == "done":
        return []
    return [f"> **Provisional.** The sweep is still {s['status']} (phase {s['phase']}): these "
            "numbers will change.", ""]  # fmt: skip


def results_md(f: dict, plots: dict[str, str], generated: str) -> str:
    lines = [title(f, "Results"), "", generated, ""]
    if f["sample"]:
        lines += [SAMPLE_NOTE, ""]
    lines += provisional(f)
    lines += ["## Question and answer", "", f"**Question.** {question(f)}", ""]
    lines += [f"**Answer.** {answer(f)}", ""]
    for section in (
        ranking_section,
        ablation_section,
        finalists_section,
        pareto_section,
        cost_section,
        kills_section,
        reference_section,
    ):
        lines += section(f)
    lines += figures_section(f, plots)
    return "\n".join(lines).rstrip() + "\n"


def limitations(f: dict) -> list[str]:
    rows = [r for r in f["rows"] if r["phase"] == "finalists"]
    seeds = sorted({r["seed"] for r in rows})
    ranking = {r["seed"] for r in f["rows"] if r["phase"] in ("ranking", "ablation", None)}
    tokens = max((r["max_tokens"] or 0 for r in f["rows"]), default=0)
    out = [
        f"- Data size: WikiText-2 is about 2M training words; runs saw at most {tokens:,} "
        "tokens, so the ranking is of short-horizon training.",
        f"- One model size: every run has {budget(f)}; the best split at other sizes may differ.",
        f"- Seeds: finalists ran {len(seeds)} seed(s) ({', '.join(map(str, seeds)) or 'none'}); "
        f"ranking cells {len(ranking)} each, on a shorter budget, so their order is a screen, "
        "not a verdict.",
        "- Latency was measured on the training machine (batch 1); contended measurements are "
        "flagged in results.csv.",
    ]
    if partial(f):
        out.append("-" + partial(f))
    if f["sample"]:
        out.append(
            "- **SAMPLE data**: a stand-in corpus, not WikiText-2; nothing here is a study result."
        )
    return out


def summary_md(f: dict, plots: dict[str, str], generated: str) -> str:
    lines = [title(f, "Summary"), "", generated, ""]
    if f["sample"]:
        lines += [SAMPLE_NOTE, ""]
    lines += provisional(f)
    lines += [f"**Question.** {question(f)}", "", f"**Answer.** {answer(f)}", ""]
    lines += finalists_section(f)[2:]
    figs = [(k, a) for k, a in FIGURES[:3] if plots.get(k)]
    lines += [" ".join(figure(plots[k], a) for k, a in figs), ""]
    lines += ["## Limitations", "", *limitations(f), ""]
    lines += ["Details: RESULTS.md; decisions: decisions.md; model cards: MODEL_CARD_*.md.", ""]
    return "\n".join(lines).rstrip() + "\n"
