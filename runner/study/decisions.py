"""decisions.md: a sweep's decisions in prose, from its events (infeasible cells, kills with
their evidence, promotions with their rankings, budget refusals, the micro-ablation), written
atomically whenever a decision is recorded."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine

from runner.ledger.events import events
from runner.ledger.results import has_sample_results
from runner.ledger.sweeps import get_sweep
from runner.study.killrule import KillRuleSpec
from trainer.prep.fetch import atomic_write_text


def report_dir(sweep) -> Path:
    return Path(sweep.report_dir or f"reports/sweep-{sweep.id:04d}")


def render_decisions(engine: Engine, sweep_id: int) -> str:
    """The sweep's decisions in prose, from its events: infeasible cells, kills with their
    evidence, promotions with their rankings, the micro-ablation."""
    sw = get_sweep(engine, sweep_id=sweep_id)
    evs = events(engine, sweep_id=sweep_id)
    lines = [
        f"# Decisions: sweep {sw.id} ({sw.name})",
        "",
        f"Kind: {sw.kind}. Phase: {sw.phase}. Status: {sw.status}.",
        "",
    ]
    if has_sample_results(engine, sweep_id=sweep_id):
        lines += [
            "**SAMPLE data**: these runs trained on a stand-in corpus (see the data manifest);",
            "nothing here is a WikiText-2 result.",
            "",
        ]
    plan = json.loads(sw.spec_json or "{}")
    if plan.get("ranking"):
        lines += READING_THE_AXES
    lines += kill_rule_section(plan)
    inf = [e for e in evs if e["kind"] == "infeasible"]
    if inf:
        lines += ["## Infeasible cells (refused by the planner)", ""]
        lines += [f"- `{e['data']['cell']}`: {e['reason']}" for e in inf] + [""]
    kills = [e for e in evs if e["kind"] == "kill"]
    if kills:
        lines += ["## Kills", ""]
        for e in kills:
            d = e["data"] or {}
            lines.append(f"- run {e['run_id']}: {e['reason']}")
            if d.get("gap_relative") is not None:
                sig = d.get("gap_sigmas")
                lines.append(
                    f"  - gap at the last point: {100 * d['gap_relative']:+.1f}% of the baseline"
                    + (f", {sig:.1f} seed sigma" if sig is not None else ", sigma: one seed")
                    + f"; margin used {d.get('margin_used', 0):.2f} PPL"
                )
            if d.get("run"):
                lines.append(
                    f"  - run {d['run'][0]} .. {d['run'][-1]} vs baseline (run "
                    f"{d.get('baseline_run')}) {d['baseline'][0]} .. {d['baseline'][-1]}"
                    " (tokens, dev PPL)"
                )
        lines.append("")
    budget = [e for e in evs if e["kind"] == "budget"]
    if budget:
        lines += ["## Budget", ""] + [f"- {e['reason']}" for e in budget] + [""]
    for e in evs:
        if e["kind"] != "promotion":
            continue
        d = e["data"]
        lines += [f"## Promotion ({d['who']})", ""]
        for axis, a in d["axes"].items():
            lines += [
                f"### {axis}",
                "",
                "| rank | cell | dev PPL | std | seeds | killed | latency ms |",
                "|---|---|---|---|---|---|---|",
            ]
            for i, c in enumerate(a["ranking"], 1):
                ppl = f"{c['dev_ppl']:.3f}" if c["dev_ppl"] is not None else "-"
                lat = f"{c['latency_ms']:.2f}" if c["latency_ms"] is not None else "-"
                lines.append(
                    f"| {i} | {c['cell']} | {ppl} | {c['dev_ppl_std']:.3f} | "
                    f"{c['seeds']} | {c['killed']} | {lat} |"
                )
            lines += ["", f"Promoted: {', '.join(a['promoted']) or 'none'}. Why: {a['why']}.", ""]
        if d.get("ablation"):
            lines += [
                "### Micro-ablation",
                "",
                d["ablation"]["summary"]
                + ": "
                + ", ".join(f"{k}: {v}" for k, v in d["ablation"]["best_embedding_ratio"].items()),
                "",
            ]
    return "\n".join(lines) + "\n"


READING_THE_AXES = [
    "## Reading the axes",
    "",
    "The planner keeps the budget by moving depth and width: along the embedding-share "
    "axis the layer count and head size change too (24/12/6 layers at 0.25/0.35/0.45 for "
    "the 10M study), so a share's effect includes its architecture's; `n_layers`, "
    "`head_dim` and `vocab_matrices_share` ((embedding + untied head) / total) are columns "
    "of results.csv, and plots use achieved values, not requested ones.",
    "",
]


def kill_rule_section(plan: dict) -> list[str]:
    """The kill rule as this sweep applies it, with its numbers (the plan's, else defaults)."""
    if "kill_rule" not in plan and "ranking" not in plan:
        return []
    k = KillRuleSpec(**(plan.get("kill_rule") or {}))
    if not k.enabled:
        return ["## Kill rule", "", "Off for this sweep.", ""]
    margin = f"{k.margin:.1%} of the baseline's PPL" if k.relative else f"{k.margin:g} PPL"
    return [
        "## Kill rule",
        "",
        f"A ranking or ablation run is stopped when its `{k.metric}` has been worse than the "
        f"baseline's (the mean of its seeds, interpolated at equal text seen: tokens x bytes "
        f"per token) by more than the larger of {margin} and {k.sigmas:g} x the baseline's "
        f"seed standard deviation (when it has two or more seeds), over "
        f"{k.window_tokens:,} tokens ending at its newest evaluation. No run is judged before "
        f"{k.min_fraction:.0%} of its token budget; baselines and finalists never are.",
        "",
    ]


def write_decisions(engine: Engine, sweep_id: int) -> Path:
    """decisions.md in the sweep's report folder, written atomically whenever a decision is
    recorded (submission, a kill, a promotion, the end of a phase or of the sweep)."""
    out = report_dir(get_sweep(engine, sweep_id=sweep_id))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "decisions.md", render_decisions(engine, sweep_id))
    return out / "decisions.md"
