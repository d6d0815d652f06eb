"""The study's tables in RESULTS.md: the ranking per axis (with each cell's LR under a grid),
the micro-ablation, the finalists (SmallBench against the untrained band) and the Pareto front."""

from __future__ import annotations

from runner.release.facts import KNOBS
from runner.release.md_format import ci, num, table


def ranking_section(f: dict) -> list[str]:
    lines = ["## Ranking per axis", ""]
    lines += [
        "Phase-1 runs (ranking and ablation) on each axis, baseline included; mean dev "
        "word-level PPL over seeds with the seed spread (std and range; none with one seed). "
        "A cell ranks on its seeds that trained to the end (`seeds`; a killed seed is never "
        "averaged in); cells whose every seed was killed rank last, on truncated runs' PPL. "
        "`dev PPL` scores each run's reported model: under the wsd schedule the one at the end "
        "of its decay (the annealed model), otherwise the one `eval.final_model` names; "
        "`best interval` is the best periodic dev eval (on `eval.max_tokens` tokens, so "
        "comparable within its column only), kept beside it.",
        "",
    ]
    grid = any(len(c.get("lr_curve") or []) > 1 for cells in f["ranking"].values() for c in cells)
    if grid:
        lines += [
            "Each cell trained at every LR of the plan's `ranking.lr_grid` (multipliers of the "
            "base LR) and ranks at its best (`LR`); `LR curve` gives dev PPL at each multiplier "
            "(killed: no seed at that LR finished), since one LR would favour some shapes.",
            "",
        ]
    for axis, cells in f["ranking"].items():
        lines += [f"### {KNOBS[axis]}", ""]
        lines += table(
            ["rank", "cell", "requested", "achieved", "layers x width", "non-emb params",
             *(["LR", "LR curve"] if grid else []),
             "seeds", "dev PPL", "best interval", "seed std", "seed range", "killed", "latency ms"],
            [
                [
                    c["rank"],
                    f"`{c['cell']}`" + (" (baseline)" if c["baseline"] else ""),
                    num(c["knob"]),
                    num(c["achieved"], 3),
                    f"{c.get('n_layers') or '?'} x {c.get('d_model') or '?'}",
                    num(c.get("non_embedding_params")),
                    *([f"{c['lr']:.2g}" if c.get("lr") else "-", lr_curve(c)] if grid else []),
                    c["seeds"],
                    num(c["dev_ppl"], 1),
                    num(c.get("best_interval_ppl"), 1),
                    num(c["dev_ppl_std"], 1),
                    "-" if c["dev_ppl_range"] is None
                    else f"{num(c['dev_ppl_range'][0], 1)} to {num(c['dev_ppl_range'][1], 1)}",
                    c["killed"],
                    num(c["latency_ms"]),
                ]
                for c in cells
            ],
        )  # fmt: skip
    if not f["ranking"]:
        lines += ["No ranking runs.", ""]
    return lines


def lr_curve(c: dict) -> str:
    """0.5x 812.3 · **1x 790.1** · 2x killed (the chosen LR in bold)."""
    best = min((p for p in c.get("lr_curve") or [] if not p["killed"]),
               key=lambda p: p["dev_ppl"], default=None)  # fmt: skip
    parts = []
    for p in c.get("lr_curve") or []:
        v = "killed" if p["killed"] else num(p["dev_ppl"], 1)
        text = f"{p['mult']:g}x {v}"
        parts.append(f"**{text}**" if p is best else text)
    return " · ".join(parts) or "-"


def ablation_section(f: dict) -> list[str]:
    lines = ["## Micro-ablation: does the best embedding share move with vocab size or tying?", ""]
    abl = (f["promotion"] or {}).get("ablation")
    if not abl:
        return [*lines, "Verdict: **undetermined** (no ablation was run or promoted).", ""]
    verdict = "undetermined" if abl.get("moves") is None else abl["summary"]
    lines += [f"Verdict: **{verdict}**.", ""]
    if abl.get("moves") is None:
        lines += [f"Why: {abl['summary']}.", ""]
    best = abl.get("best_embedding_ratio") or {}
    groups = abl.get("groups") or {}
    if best:
        common = ", ".join(num(x) for x in abl.get("common_shares") or [])
        lines += [f"Groups compared on the shares all of them have: {common}.", ""]

        def spread(g):
            d = groups.get(g) or {}
            if d.get("gap_to_next") is None:
                return ""
            if d.get("noise") is None:
                return f"{num(d['gap_to_next'])}, noise unknown (one seed)"
            clear = "clear" if d.get("clear") else "within noise"
            return f"{num(d['gap_to_next'])} vs noise {num(d['noise'])} ({clear})"

        lines += table(
            ["vocab / tying", "best common share", "lead over the next (2 seed sd)",
             "shares that survived"],
            [[g, num(s), spread(g), ", ".join(num(x) for x in abl["surviving_shares"].get(g, []))]
             for g, s in sorted(best.items())],
        )  # fmt: skip
    return lines


def partial(f: dict) -> str:
    """Whether the finalists' final evaluations scored only part of dev and test."""
    scored = [
        (r["result"].get("dev") or {}).get("scored_tokens")
        for r in f["finalist_runs"]
        if (r["result"].get("dev") or {}).get("partial")
    ]
    if not scored:
        return ""
    return (
        f" **Partial evaluations:** the final evals scored the first {max(scored):,} tokens of "
        "dev and of test (eval.final_max_tokens), not the whole splits."
    )


def suite_note(finalists: list[dict]) -> str:
    """Which paradigms SmallBench means here, when it is not the study's 9."""
    if not any(x.get("smallbench_suite") == "all" for x in finalists):
        return ""
    return (
        " **SmallBench here scores every BLiMP paradigm** (eval.smallbench_tasks: all), not "
        "the study's 9."
    )


def finalists_section(f: dict) -> list[str]:
    lines = ["## Finalists", ""]
    if not f["finalists"]:
        return [*lines, "No finalist finished.", ""]
    lines += [
        "Word-level PPL (WikiText convention), mean ± half-width [95% t-interval over seeds]. "
        "SmallBench (macro accuracy): mean [95% interval of a bootstrap over seeds and items, "
        "so it holds model noise as well as item noise], beside the band of untrained models "
        "of the same shape (mean ± 2 sd over 5 inits: an untrained model does not score 0.5) "
        "and a unigram model of the training tokens; a score inside the band is not evidence "
        "of learned grammar. Seeds that did not finish are counted, not averaged."
        + partial(f)
        + suite_note(f["finalists"]),
        "",
    ]
    lines += table(
        ["cell", "axis", "seeds", "left out", "dev PPL", "test PPL", "SmallBench",
         "untrained band", "vs band", "unigram", "latency ms"],
        [
            [
                f"`{x['cell']}`",
                x["axis"] or "-",
                x["seeds"],
                x["seeds_left_out"],
                ci(x["dev_ppl_mean"], x["dev_ppl_ci95_low"], x["dev_ppl_ci95_high"]),
                ci(x["test_ppl_mean"], x["test_ppl_ci95_low"], x["test_ppl_ci95_high"]),
                boot(x),
                band_text(x),
                x.get("smallbench_vs_untrained") or "-",
                num(x.get("smallbench_unigram_acc"), 3),
                latency(x),
            ]
            for x in f["finalists"]
        ],
    )  # fmt: skip
    return lines


def boot(x: dict) -> str:
    """SmallBench mean [bootstrap interval over seeds and items]."""
    lo, hi = x.get("smallbench_boot_low"), x.get("smallbench_boot_high")
    if lo is None or hi is None:
        return ci(x["smallbench_mean"], x.get("smallbench_ci95_low"),
                  x.get("smallbench_ci95_high"), 3)  # fmt: skip
    return f"{num(x['smallbench_mean'], 3)} [{num(lo, 3)}, {num(hi, 3)}]"


def latency(x: dict) -> str:
    """The uncontended mean; contended seeds (another run on the device then) named, not mixed."""
    n = x.get("latency_contended_seeds") or 0
    return num(x["latency_seq128_ms"]) + (f" ({n} contended, left out)" if n else "")


def band_text(x: dict) -> str:
    m, sd = x.get("smallbench_untrained_mean"), x.get("smallbench_untrained_sd")
    if m is None:
        return "-"
    return f"{num(m, 3)} ± {num(2 * (sd or 0.0), 3)}"


def pareto_section(f: dict) -> list[str]:
    lines = ["## Latency–PPL Pareto front", ""]
    lines += [
        "Finalists no other finalist beats on both prefill latency (batch 1, 128 tokens) and "
        "dev PPL.",
        "",
    ]
    if not f["pareto"]:
        return [*lines, "No finalist has both numbers.", ""]
    return lines + table(
        ["cell", "latency ms", "dev PPL"],
        [[f"`{x['cell']}`", num(x["latency_seq128_ms"]), num(x["dev_ppl_mean"], 1)]
         for x in f["pareto"]],
    )  # fmt: skip
