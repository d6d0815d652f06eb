"""Aggregation and plots (pandas, matplotlib), from the ledger or from run directories.

Outputs in a report folder: results.csv (one row per run, `runner.aggregate.COLUMNS`),
early_results.csv (ranking-phase runs with their dev-PPL slope, the study's ranking input),
ranking.csv (per axis), finalists.csv (mean, std and 95% CI over seeds), and plots as 300 dpi PNG
plus SVG: dev PPL vs embedding ratio, dev PPL vs GLU expansion (finalists with error bars),
latency vs PPL with the Pareto front, learning curves per phase. Anything made from sample data
says so in its title and in a `sample` column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from runner import aggregate

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


# ---------------------------------------------------------------- sources


def frame_from_ledger(engine: Engine, sweep_id: int | None = None) -> tuple[pd.DataFrame, dict]:
    """(results rows, dev curves by run id) from the ledger."""
    from trainer.config import TrainConfig

    where, args = ("WHERE r.sweep_id = ?", (sweep_id,)) if sweep_id is not None else ("", ())
    with engine.connect() as conn:
        data = conn.exec_driver_sql(
            "SELECT r.id, r.name, r.sweep_id, r.phase, r.status, r.spec_json, r.tokens_seen, "
            "r.gpu_hours, r.cost_usd, r.exit_reason, r.run_dir, r.cell, r.axis, r.is_baseline, "
            f"res.metrics_json FROM runs r LEFT JOIN results res ON res.run_id = r.id {where} "
            "ORDER BY r.id",
            args,
        ).all()
        pts = conn.exec_driver_sql(
            "SELECT p.run_id, p.tokens, p.value FROM metric_points p JOIN runs r ON r.id = "
            f"p.run_id {where} {'AND' if where else 'WHERE'} p.name = 'dev/word_ppl' "
            "ORDER BY p.run_id, p.tokens",
            args,
        ).all()
    plans: dict[str, dict] = {}
    rows = []
    for (
        rid,
        name,
        sweep,
        phase,
        status,
        spec,
        tokens,
        gpu_h,
        cost,
        reason,
        run_dir,
        cell,
        axis,
        is_base,
        mjson,
    ) in data:
        cfg = json.loads(spec)
        metrics = json.loads(mjson) if mjson else None
        plan = (metrics or {}).get("plan")
        if plan is None:
            key = json.dumps(cfg.get("model"), sort_keys=True)
            plan = plans.setdefault(key, TrainConfig.model_validate(cfg).plan().to_dict())
        row = aggregate.row(
            config=cfg,
            plan=plan,
            metrics=metrics,
            run_id=rid,
            name=name,
            sweep_id=sweep,
            phase=phase,
            status=status,
            tokens_seen=tokens,
            gpu_hours=gpu_h,
            cost_usd=cost,
            exit_reason=reason,
            run_dir=run_dir,
        )
        row.update(cell=cell or name, axis=axis, is_baseline=bool(is_base))
        rows.append(row)
    curves: dict[int, list[tuple[int, float]]] = {}
    for rid, t, v in pts:
        curves.setdefault(rid, []).append((int(t), float(v)))
    return pd.DataFrame(rows), curves


def frame_from_logs(log_dir: Path) -> tuple[pd.DataFrame, dict]:
    """(results rows, dev curves) from run directories: every */metrics.json under log_dir."""
    rows, curves = [], {}
    for i, path in enumerate(sorted(Path(log_dir).rglob("metrics.json")), 1):
        m = json.loads(path.read_text())
        cfg = m.get("config") or {}
        row = aggregate.row(
            config=cfg, plan=m.get("plan"), metrics=m, run_id=i, run_dir=str(path.parent)
        )
        row.update(cell=cfg.get("name"), axis=None, is_baseline=False)
        rows.append(row)
        curves[i] = [(int(e["tokens"]), float(e["word_ppl"])) for e in m.get("dev_curve", [])]
    return pd.DataFrame(rows, columns=[*aggregate.COLUMNS, "cell", "axis", "is_baseline"]), curves


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
    for axis, knob in (("embedding_ratio", "embedding_ratio"), ("glu_expansion", "glu_expansion")):
        part = p1[p1["axis"].isin([axis, "baseline"]) | p1["is_baseline"]]
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
        part = p1[p1["axis"].isin([knob, "baseline"]) | p1["is_baseline"]].dropna(
            subset=["dev_word_ppl"]
        )
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
            f = fin[fin["axis"].isin([knob, "baseline"])].dropna(subset=["dev_ppl_mean"])
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
    df.reindex(columns=aggregate.COLUMNS).to_csv(files["results"], index=False)
    tables = {
        "early_results": early_results(df, curves),
        "ranking": ranking_table(df),
        "finalists": finalists_table(df),
    }
    for name, t in tables.items():
        files[name] = out / f"{name}.csv"
        t.to_csv(files[name], index=False)
    return {k: str(v) for k, v in files.items()} | {"plots": plots(df, curves, out / "plots")}


def write_report(engine: Engine, sweep_id: int) -> dict:
    from runner.cost import write_summary
    from runner.plans import get_sweep

    sw = get_sweep(engine, sweep_id)
    df, curves = frame_from_ledger(engine, sweep_id)
    out = Path(sw.report_dir or f"reports/sweep-{sweep_id:04d}")
    files = write_tables(df, curves, out)
    files["cost"] = str(write_summary(engine, sweep_id, out))
    return files


def aggregate_logs(log_dir: Path, output: Path, report_dir: Path | None = None) -> dict:
    """scripts/aggregate_results.py: results_summary.csv (+ tables and plots) from run dirs."""
    df, curves = frame_from_logs(log_dir)
    if df.empty:
        raise FileNotFoundError(f"no metrics.json under {log_dir}: run some experiments first")
    df["axis"] = infer_axis(df)
    df["is_baseline"] = df["axis"] == "baseline"
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    df.reindex(columns=aggregate.COLUMNS).to_csv(output, index=False)
    files = {"results": str(output)}
    if report_dir is not None:
        files |= write_tables(df, curves, Path(report_dir))
    return files
