"""Aggregation and plots (pandas, matplotlib), from the ledger or from run directories.

Outputs in a report folder: results.csv (one row per run, `runner.study.results.COLUMNS`),
early_results.csv (ranking-phase runs with their dev-PPL slope, the study's ranking input),
ranking.csv (per axis), finalists.csv (mean, std and 95% CI over seeds), and plots as 300 dpi PNG
plus SVG: dev PPL vs embedding ratio, dev PPL vs GLU expansion (finalists with error bars),
latency vs PPL with the Pareto front, learning curves per phase. Anything made from sample data
says so in its title and in a `sample` column.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from runner.launch.cost import write_summary
from runner.ledger import crud
from runner.study.promotion import AXES, on_axis
from runner.study.results import COLUMNS, frame_from_ledger, frame_from_logs

# two-sided 95% t critical values by degrees of freedom (1..30); normal beyond
T95 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def t95(dof: int) -> float:
    return T95[dof - 1] if 1 <= dof <= len(T95) else 1.96


# ---------------------------------------------------------------- tables


def ppl_slope(curve: list[tuple[int, float]]) -> float | None:
    """d(dev PPL)/d(log10 tokens) over the second half of the curve (negative = improving)."""
    pts = [(t, v) for t, v in curve if t > 0 and math.isfinite(v)]
    if len(pts) < 2:
        return None
    half = pts[len(pts) // 2 :] if len(pts) >= 4 else pts
    x = np.log10([t for t, _ in half])
    y = np.array([v for _, v in half])
    return float(np.polyfit(x, y, 1)[0])


def early_results(df: pd.DataFrame, curves: dict) -> pd.DataFrame:
    ranking = df[df["phase"].isin(["ranking", "ablation"]) | df["phase"].isna()].copy()
    ranking["ppl_slope_per_decade"] = [ppl_slope(curves.get(r, [])) for r in ranking["run_id"]]
    ranking["last_dev_ppl"] = [
        curves[r][-1][1] if curves.get(r) else None for r in ranking["run_id"]
    ]
    cols = [
        "run_id",
        "cell",
        "axis",
        "status",
        "seed",
        "embedding_ratio",
        "glu_expansion",
        "vocab_size",
        "tied_lm_head",
        "tokens_seen",
        "last_dev_ppl",
        "dev_word_ppl",
        "ppl_slope_per_decade",
        "latency_seq128_ms",
        "sample",
    ]
    return ranking[[c for c in cols if c in ranking]].sort_values("dev_word_ppl")


def infer_axis(df: pd.DataFrame) -> pd.Series:
    """For run directories (no plan): which knob differs from the most common setting."""
    if df.empty:
        return pd.Series(dtype=object)
    mode_r = df["embedding_ratio"].mode().iloc[0]
    mode_g = df["glu_expansion"].mode().iloc[0]

    def axis(r):
        if r["glu_expansion"] == mode_g and r["embedding_ratio"] != mode_r:
            return "embedding_ratio"
        if r["embedding_ratio"] == mode_r and r["glu_expansion"] != mode_g:
            return "glu_expansion"
        return (
            "baseline"
            if (r["embedding_ratio"], r["glu_expansion"]) == (mode_r, mode_g)
            else "other"
        )

    return df.apply(axis, axis=1)


def ranking_table(df: pd.DataFrame) -> pd.DataFrame:
    out = []
    p1 = df[df["phase"].isin(["ranking", "ablation"]) | df["phase"].isna()]
    for axis in AXES:
        knob = axis
        part = p1[[on_axis(axis, a, b) for a, b in zip(p1["axis"], p1["is_baseline"], strict=True)]]
        if part.empty:
            continue
        g = (
            part.groupby("cell")
            .agg(
                knob=(knob, "first"),
                dev_ppl=("dev_word_ppl", "mean"),
                dev_ppl_std=("dev_word_ppl", "std"),
                seeds=("dev_word_ppl", "count"),
                killed=("status", lambda s: int((s == "killed").sum())),
                latency_ms=("latency_seq128_ms", "mean"),
            )
            .reset_index()
        )
        g = g.sort_values(["killed", "dev_ppl", "latency_ms"])
        g.insert(0, "rank", range(1, len(g) + 1))
        g.insert(0, "axis", axis)
        out.append(g)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def finalists_table(df: pd.DataFrame) -> pd.DataFrame:
    fin = df[df["phase"] == "finalists"]
    if fin.empty:
        return pd.DataFrame()
    p1 = df[df["phase"] != "finalists"]
    axis_of = dict(zip(p1["cell"], p1["axis"], strict=False))
    rows = []
    for cell, g in fin.groupby("cell"):
        vals = g["dev_word_ppl"].dropna().to_numpy(dtype=float)
        n = len(vals)
        mean = float(vals.mean()) if n else math.nan
        std = float(vals.std(ddof=1)) if n > 1 else 0.0
        half = t95(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
        test = g["test_word_ppl"].dropna().to_numpy(dtype=float)
        rows.append(
            {
                "cell": cell,
                "axis": axis_of.get(cell),
                "embedding_ratio": g["embedding_ratio"].iloc[0],
                "glu_expansion": g["glu_expansion"].iloc[0],
                "vocab_size": g["vocab_size"].iloc[0],
                "tied_lm_head": g["tied_lm_head"].iloc[0],
                "seeds": n,
                "dev_ppl_mean": mean,
                "dev_ppl_std": std,
                "dev_ppl_ci95_low": mean - half,
                "dev_ppl_ci95_high": mean + half,
                "test_ppl_mean": float(test.mean()) if len(test) else math.nan,
                "smallbench_mean": g["smallbench_macro_acc"].mean(),
                "latency_seq128_ms": g["latency_seq128_ms"].mean(),
            }
        )
    return pd.DataFrame(rows).sort_values("dev_ppl_mean")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both latency and PPL (lower is better)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


# ---------------------------------------------------------------- plots


def _save(fig, out: Path, name: str) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{name}.{ext}"
        fig.savefig(p, dpi=300 if ext == "png" else None, bbox_inches="tight")
        paths.append(str(p))
    return paths


def _title(text: str, sample: bool) -> str:
    return text + ("\nSAMPLE data (not WikiText-2)" if sample else "")


def plots(df: pd.DataFrame, curves: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[str] = []
    if df.empty:
        return written
    sample = bool(df["sample"].fillna(False).astype(bool).any())
    p1 = df[df["phase"].isin(["ranking", "ablation"]) | df["phase"].isna()]
    fin = finalists_table(df)
    for knob, label, name in (
        ("embedding_ratio", "embedding share of the budget", "ppl_vs_embedding_ratio"),
        ("glu_expansion", "SwiGLU expansion (FFN width / d_model)", "ppl_vs_glu_expansion"),
    ):
        part = p1[
            [on_axis(knob, a, b) for a, b in zip(p1["axis"], p1["is_baseline"], strict=True)]
        ].dropna(subset=["dev_word_ppl"])
        fig, ax = plt.subplots(figsize=(5.5, 4))
        if not part.empty:
            killed = part["status"] == "killed"
            ax.scatter(
                part.loc[~killed, knob],
                part.loc[~killed, "dev_word_ppl"],
                label="ranking runs",
                color="#3b6ea8",
            )
            if killed.any():
                ax.scatter(
                    part.loc[killed, knob],
                    part.loc[killed, "dev_word_ppl"],
                    marker="x",
                    color="#c0504d",
                    label="killed",
                )
        if not fin.empty:  # this axis's finalists (and the baseline's)
            f = fin[[on_axis(knob, a, False) for a in fin["axis"]]].dropna(subset=["dev_ppl_mean"])
            ax.errorbar(
                f[knob],
                f["dev_ppl_mean"],
                yerr=f["dev_ppl_std"],
                fmt="o",
                capsize=4,
                color="#2e7d32",
                label="finalists (mean +- std over seeds)",
            )
        ax.set(
            xlabel=label, ylabel="dev word-level PPL", title=_title(f"dev PPL vs {knob}", sample)
        )
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        written += _save(fig, out, name)
        plt.close(fig)

    done = df.dropna(subset=["dev_word_ppl", "latency_seq128_ms"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if not done.empty:
        pts = list(zip(done["latency_seq128_ms"], done["dev_word_ppl"], strict=True))
        ax.scatter(*zip(*pts, strict=True), color="#7f7f7f", label="runs")
        front = sorted(pts[i] for i in pareto_front(pts))
        ax.plot(*zip(*front, strict=True), "-o", color="#c0504d", label="Pareto front")
        for (x, y), cell in zip(pts, done["cell"], strict=True):
            ax.annotate(str(cell), (x, y), fontsize=6, alpha=0.7)
    ax.set(
        xlabel="batch-1 latency at seq 128 (ms)",
        ylabel="dev word-level PPL",
        title=_title("latency vs PPL", sample),
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    written += _save(fig, out, "latency_vs_ppl")
    plt.close(fig)

    for phase, part in df.groupby(df["phase"].fillna("runs")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for rid, cell in zip(part["run_id"], part["cell"], strict=True):
            c = curves.get(rid)
            if c:
                ax.plot([t for t, _ in c], [v for _, v in c], label=f"{cell} (#{rid})", lw=1)
        ax.set(
            xlabel="tokens seen",
            ylabel="dev word-level PPL",
            yscale="log",
            title=_title(f"learning curves: {phase}", sample),
        )
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
        written += _save(fig, out, f"curves_{phase}")
        plt.close(fig)
    return written


# ---------------------------------------------------------------- reports


def write_tables(
    df: pd.DataFrame, curves: dict, out: Path, results_name: str = "results.csv"
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {"results": out / results_name}
    df.reindex(columns=COLUMNS).to_csv(files["results"], index=False)
    tables = {
        "early_results": early_results(df, curves),
        "ranking": ranking_table(df),
        "finalists": finalists_table(df),
    }
    for name, t in tables.items():
        files[name] = out / f"{name}.csv"
        t.to_csv(files[name], index=False)
    return {k: str(v) for k, v in files.items()} | {"plots": plots(df, curves, out / "plots")}


def report_dir(sweep) -> Path:
    return Path(sweep.report_dir or f"reports/sweep-{sweep.id:04d}")


def write_report(engine: Engine, sweep_id: int) -> dict:
    """The whole report folder of a sweep: tables, plots, decisions.md, COST_SUMMARY.json."""
    sw = crud.get_sweep(engine, sweep_id=sweep_id)
    df, curves = frame_from_ledger(engine, sweep_id)
    out = report_dir(sw)
    files = write_tables(df, curves, out)
    files["decisions"] = str(write_decisions(engine, sweep_id))
    files["cost"] = str(write_summary(engine, sweep_id, out))
    return files


# ---------------------------------------------------------------- decisions.md


def render_decisions(engine: Engine, sweep_id: int) -> str:
    """The sweep's decisions in prose, from its events: infeasible cells, kills with their
    evidence, promotions with their rankings, the micro-ablation."""
    sw = crud.get_sweep(engine, sweep_id=sweep_id)
    evs = crud.events(engine, sweep_id=sweep_id, limit=100_000)
    lines = [
        f"# Decisions: sweep {sw.id} ({sw.name})",
        "",
        f"Kind: {sw.kind}. Phase: {sw.phase}. Status: {sw.status}.",
        "",
    ]
    inf = [e for e in evs if e.kind == "infeasible"]
    if inf:
        lines += ["## Infeasible cells (refused by the planner)", ""]
        lines += [f"- `{json.loads(e.data_json)['cell']}`: {e.reason}" for e in inf] + [""]
    kills = [e for e in evs if e.kind == "kill"]
    if kills:
        lines += ["## Kills", ""]
        for e in kills:
            d = json.loads(e.data_json) if e.data_json else {}
            lines.append(f"- run {e.run_id}: {e.reason}")
            if d.get("run"):
                lines.append(
                    f"  - run {d['run'][0]} .. {d['run'][-1]} vs baseline (run "
                    f"{d.get('baseline_run')}) {d['baseline'][0]} .. {d['baseline'][-1]}"
                    " (tokens, dev PPL)"
                )
        lines.append("")
    budget = [e for e in evs if e.kind == "budget"]
    if budget:
        lines += ["## Budget", ""] + [f"- {e.reason}" for e in budget] + [""]
    for e in evs:
        if e.kind != "promotion":
            continue
        d = json.loads(e.data_json)
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


def write_decisions(engine: Engine, sweep_id: int) -> Path:
    """decisions.md in the sweep's report folder, written atomically whenever a decision is
    recorded (submission, a kill, a promotion, the end of a phase or of the sweep)."""
    out = report_dir(crud.get_sweep(engine, sweep_id=sweep_id))
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".decisions.md.tmp{os.getpid()}"
    tmp.write_text(render_decisions(engine, sweep_id))
    os.replace(tmp, out / "decisions.md")
    return out / "decisions.md"


def aggregate_logs(log_dir: Path, output: Path, report_dir: Path | None = None) -> dict:
    """scripts/aggregate_results.py: results_summary.csv (+ tables and plots) from run dirs."""
    df, curves = frame_from_logs(log_dir)
    if df.empty:
        raise FileNotFoundError(f"no metrics.json under {log_dir}: run some experiments first")
    df["axis"] = infer_axis(df)
    df["is_baseline"] = df["axis"] == "baseline"
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    df.reindex(columns=COLUMNS).to_csv(output, index=False)
    files = {"results": str(output)}
    if report_dir is not None:
        files |= write_tables(df, curves, Path(report_dir))
    return files
