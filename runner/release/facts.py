"""Everything a study's written report says, gathered from the ledger once, as plain values in
a fixed order (so the same ledger renders the same bytes)."""

from __future__ import annotations

import json
import math
from collections import Counter

from sqlalchemy.engine import Engine

from runner.cost import Pricing, measured_tokens_per_s, sweep_cost
from runner.ledger import events, series
from runner.ledger.results import has_sample_results, results_for
from runner.ledger.sweeps import get_sweep, sweep_runs
from runner.study.promotion import AXES, at_best_lr, on_axis
from runner.study.results import ledger_rows
from runner.study.stats import finalist_stats, mean_ci, pareto_front

KNOBS = {"embedding_ratio": "embedding share", "glu_expansion": "SwiGLU expansion"}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def ranking(rows: list[dict]) -> dict[str, list[dict]]:
    """Per axis, its cells (baseline included) in ranking order: mean dev PPL over seeds with
    the seed spread, kills counted; killed cells rank last (their PPL is a truncated run's)."""
    # under an LR grid, each shape at its best LR (the others are its lr_curve)
    phase1 = [r for r in at_best_lr(rows) if r["phase"] in ("ranking", "ablation", None)]
    out = {}
    for axis in AXES:
        cells: dict[str, list[dict]] = {}
        for r in phase1:
            if on_axis(axis, r["axis"], r["is_baseline"]):
                cells.setdefault(r["cell"], []).append(r)
        table = []
        for cell, g in cells.items():
            # ranked on the seeds that trained to the end; killed ones only if all were
            ranked = [r for r in g if r["status"] != "killed"] or g
            ci = mean_ci(r["dev_word_ppl"] for r in ranked)
            ppls = [r["dev_word_ppl"] for r in ranked if _finite(r["dev_word_ppl"])]
            best_interval = [
                r["best_interval_dev_word_ppl"]
                for r in ranked
                if _finite(r.get("best_interval_dev_word_ppl"))
            ]
            lat = [
                r["latency_seq128_ms"]
                for r in g
                if _finite(r["latency_seq128_ms"]) and not r.get("latency_contended")
            ]
            table.append(
                {
                    "cell": cell,
                    "knob": g[0][axis],
                    "achieved": g[0].get(f"achieved_{axis}"),
                    "baseline": any(r["is_baseline"] for r in g),
                    "seeds": len(ranked),
                    "dev_ppl": ci["mean"],
                    "dev_ppl_std": ci["std"] if ci["n"] > 1 else None,
                    "dev_ppl_range": (min(ppls), max(ppls)) if len(ppls) > 1 else None,
                    # the best periodic eval, beside the scored (annealed, under wsd) model
                    "best_interval_ppl": (
                        sum(best_interval) / len(best_interval) if best_interval else None
                    ),
                    "killed": sum(r["status"] == "killed" for r in g),
                    "runs": len(g),
                    "latency_ms": sum(lat) / len(lat) if lat else None,
                    # the shape the share and GLU axes move (depth 24 to 6, width 160 to 280)
                    "n_layers": g[0].get("n_layers"),
                    "d_model": g[0].get("d_model"),
                    "non_embedding_params": g[0].get("non_embedding_params"),
                    "lr": g[0].get("lr"),
                    "lr_curve": g[0].get("lr_curve"),
                }
            )
        table.sort(
            key=lambda c: (c["killed"] == c["runs"], not _finite(c["dev_ppl"]), c["dev_ppl"])
        )
        for i, c in enumerate(table, 1):
            c["rank"] = i
        if table:
            out[axis] = table
    return out


def kills(engine: Engine, sweep_id: int, names: dict[int, str]) -> list[dict]:
    out = []
    for e in events.events(engine, sweep_id=sweep_id, kinds=("kill",)):
        d = e["data"] or {}
        out.append(
            {
                "run_id": e["run_id"],
                "name": names.get(e["run_id"], "?"),
                "reason": e["reason"],
                "gap_relative": d.get("gap_relative"),
                "gap_sigmas": d.get("gap_sigmas"),
                "margin_used": d.get("margin_used"),
                "run": d.get("run") or [],
                "baseline": d.get("baseline") or [],
                "baseline_run": d.get("baseline_run"),
            }
        )
    return out


def promotion(engine: Engine, sweep_id: int) -> dict | None:
    """The last promotion decision (automatic or manual) with the ablation's findings."""
    evs = events.events(engine, sweep_id=sweep_id, kinds=("promotion",))
    return evs[-1]["data"] if evs else None


def cost(engine: Engine, sweep_id: int, pricing: Pricing) -> dict:
    """Per phase: GPU-hours and $ spent (charged attempts), beside the forecast of the phase's
    planned tokens at the speed this sweep measured, on the GPU its attempts used (the
    service's own when none was recorded), priced by the same table."""
    summary = sweep_cost(engine, sweep_id)
    accs = Counter(a.get("accelerator") for a in summary["attempts"] if a.get("accelerator"))
    acc = accs.most_common(1)[0][0] if accs else pricing.accelerator
    tps = measured_tokens_per_s(engine, sweep_id, acc)
    phases = []
    for phase, spent in summary["phases"].items():
        planned = sum(r["max_tokens"] for r in summary["runs"] if (r["phase"] or "-") == phase)
        try:
            f = pricing.forecast(planned, accelerator=acc, spot=pricing.spot, tokens_per_s=tps)
        except ValueError:  # a GPU the table does not price: say so rather than guess
            f = {"gpu_hours": None, "usd": None, "tokens_per_s": tps}
        phases.append(
            {
                "phase": phase,
                "runs": spent["runs"],
                "planned_tokens": planned,
                "forecast_hours": planned / tps / 3600 if tps else None,
                "forecast_gpu_hours": f["gpu_hours"],
                "forecast_usd": f["usd"],
                "gpu_hours": spent["gpu_hours"],
                "usd": spent["cost_usd"],
            }
        )
    return {
        "accelerator": acc or "CPU",
        "tokens_per_s": tps,
        "budget_usd": summary["budget_usd"],
        "spent_usd": summary["spent_usd"],
        "gpu_hours": summary["gpu_hours"],
        "phases": phases,
    }


def pareto(finalists: list[dict]) -> list[dict]:
    """The finalists no other finalist beats on both prefill latency and dev PPL."""
    pts = [f for f in finalists if _finite(f["latency_seq128_ms"]) and _finite(f["dev_ppl_mean"])]
    idx = pareto_front([(f["latency_seq128_ms"], f["dev_ppl_mean"]) for f in pts])
    return sorted((pts[i] for i in idx), key=lambda f: f["latency_seq128_ms"])


def gather(engine: Engine, sweep_id: int, pricing: Pricing, ngram: dict | None) -> dict:
    sw = get_sweep(engine, sweep_id=sweep_id)
    rows = sorted(ledger_rows(engine, sweep_id), key=lambda r: r["run_id"])
    runs = sweep_runs(engine, sweep_id=sweep_id)
    names = {r.id: r.name for r in runs}
    fins = finalist_stats(rows)
    fin_rows = [r for r in rows if r["phase"] == "finalists" and r["status"] == "succeeded"]
    results = results_for(engine, run_ids=[r["run_id"] for r in fin_rows])
    curves = series.curves(engine, name="dev/word_ppl", sweep_id=sweep_id)
    return {
        "sweep": {
            "id": sw.id,
            "name": sw.name,
            "kind": sw.kind,
            "phase": sw.phase,
            "status": sw.status,
        },
        "plan": json.loads(sw.spec_json or "{}"),
        "sample": has_sample_results(engine, sweep_id=sweep_id),
        "rows": rows,
        "ranking": ranking(rows),
        "finalists": fins,
        "finalist_runs": [
            {**r, "result": results.get(r["run_id"]) or {}, "curve": curves.get(r["run_id"], [])}
            for r in fin_rows
        ],
        "promotion": promotion(engine, sweep_id),
        "kills": kills(engine, sweep_id, names),
        "cost": cost(engine, sweep_id, pricing),
        "pareto": pareto(fins),
        "ngram": ngram,
    }
