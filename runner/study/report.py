"""Aggregation and plots (pandas, matplotlib), from the ledger or from run directories.

Outputs in a report folder: results.csv (one row per run, `runner.study.results.COLUMNS`),
early_results.csv (ranking-phase runs with their dev-PPL slope, the study's ranking input),
ranking.csv (per axis), finalists.csv (mean, std and 95% CI over seeds), and plots as 300 dpi PNG
plus SVG: dev PPL vs embedding ratio, dev PPL vs GLU expansion (finalists with error bars),
latency vs PPL with the Pareto front (one per phase and device), learning curves per phase.
Anything made from sample data
says so in its title and in a `sample` column.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from runner.cost import write_summary
from runner.ledger import series
from runner.ledger.sweeps import get_sweep, sweep_runs
from runner.study.decisions import report_dir, write_decisions
from runner.study.promotion import AXES, at_best_lr, on_axis
from runner.study.results import COLUMNS, csv_safe, ledger_rows, log_rows
from runner.study.stats import finalist_stats, pareto_front
from trainer.evaluation.ngram import LITERATURE, cached_baseline, data_dir_of

COLUMNS_PLUS = [*COLUMNS, "cell", "axis", "is_baseline", "smallbench_hits"]


def frame_from_ledger(engine: Engine, sweep_id: int | None = None) -> tuple[pd.DataFrame, dict]:
    """(results rows, dev curves by run id) from the ledger."""
    curves = series.curves(engine, name="dev/word_ppl", sweep_id=sweep_id)
    return pd.DataFrame(ledger_rows(engine, sweep_id), columns=COLUMNS_PLUS), curves


def frame_from_logs(log_dir: Path) -> tuple[pd.DataFrame, dict]:
    rows, curves = log_rows(log_dir)
    return pd.DataFrame(rows, columns=COLUMNS_PLUS), curves


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
    if len(df):  # under an LR grid, each shape at its best LR (promotion.at_best_lr)
        df = pd.DataFrame(at_best_lr(df.to_dict("records")))
    p1 = df[df["phase"].isin(["ranking", "ablation"]) | df["phase"].isna()]
    for axis in AXES:
        knob = axis
        part = p1[[on_axis(axis, a, b) for a, b in zip(p1["axis"], p1["is_baseline"], strict=True)]]
        if part.empty:
            continue
        # a cell ranks on its seeds that trained to the end; a killed seed's truncated PPL
        # counts only where every seed of the cell was killed
        killed = part["status"] == "killed"
        all_killed = killed.groupby(part["cell"]).transform("all")
        part = part.assign(ranked_ppl=part["dev_word_ppl"].where(~killed | all_killed))
        if "latency_contended" in part:  # a contended latency never enters the mean
            busy = part["latency_contended"].fillna(False).astype(bool)
            part = part.assign(latency_seq128_ms=part["latency_seq128_ms"].where(~busy))
        if "lr" not in part:
            part = part.assign(lr=None)
        g = (
            part.groupby("cell")
            .agg(
                knob=(knob, "first"),
                lr=("lr", "first"),  # the LR the cell ranks at (its best, under an LR grid)
                dev_ppl=("ranked_ppl", "mean"),
                dev_ppl_std=("ranked_ppl", "std"),
                seeds=("ranked_ppl", "count"),
                runs=("status", "count"),
                killed=("status", lambda s: int((s == "killed").sum())),
                latency_ms=("latency_seq128_ms", "mean"),
                sample=("sample", lambda s: bool(s.fillna(False).astype(bool).any())),
            )
            .reset_index()
        )
        g["all_killed"] = g["killed"] == g["runs"]
        g = g.sort_values(["all_killed", "dev_ppl", "latency_ms"]).drop(columns="runs")
        g.insert(0, "rank", range(1, len(g) + 1))
        # how far behind the winner each cell is, in percent and in units of the seed spread
        # (the pooled std of the two cells; empty with one seed, when the spread is unknown)
        best = g.iloc[0]
        g["gap_to_winner_pct"] = 100 * (g["dev_ppl"] - best["dev_ppl"]) / best["dev_ppl"]
        pooled = ((g["dev_ppl_std"] ** 2 + best["dev_ppl_std"] ** 2) / 2) ** 0.5
        g["gap_to_winner_spreads"] = (g["dev_ppl"] - best["dev_ppl"]) / pooled.where(pooled > 0)
        g.insert(0, "axis", axis)
        out.append(g)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def finalists_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and 95% CI over seeds per finalist cell (runner.study.stats)."""
    return pd.DataFrame(finalist_stats(df.to_dict("records")))


# ---------------------------------------------------------------- plots


def _save(fig, out: Path, name: str) -> list[str]:
    import matplotlib

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{name}.{ext}"
        # no date and fixed SVG ids: the same ledger gives the same bytes (release reports)
        meta = {"Date": None} if ext == "svg" else {"Software": None}
        with matplotlib.rc_context({"svg.hashsalt": "pax"}):
            fig.savefig(p, dpi=300 if ext == "png" else None, bbox_inches="tight", metadata=meta)
        paths.append(str(p))
    return paths


def _title(text: str, sample: bool) -> str:
    return text + ("\nSAMPLE data (not WikiText-2)" if sample else "")


# A service may write one sweep's report twice at once (the scheduler's at the sweep's close, a
# request's): one writer at a time per process, or two would interleave the same CSV files,
# and pyplot's global rc_context could end while the other saves (its SVG ids then random)
REPORT_LOCK = threading.RLock()


def plots(df: pd.DataFrame, curves: dict, out: Path) -> list[str]:
    with REPORT_LOCK:
        return _draw(df, curves, out)


def _draw(df: pd.DataFrame, curves: dict, out: Path) -> list[str]:
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
        ("embedding_ratio", "embedding share of the budget (achieved)", "ppl_vs_embedding_ratio"),
        (
            "glu_expansion",
            "SwiGLU expansion, FFN width / d_model (achieved)",
            "ppl_vs_glu_expansion",
        ),
    ):
        part = p1[
            [on_axis(knob, a, b) for a, b in zip(p1["axis"], p1["is_baseline"], strict=True)]
        ].dropna(subset=["dev_word_ppl"])
        fig, ax = plt.subplots(figsize=(5.5, 4))
        if not part.empty:
            # the achieved value (the planner's), not the requested one: the baseline's GLU
            # expansion is 2.560, not 2.66
            x = (
                part[f"achieved_{knob}"].fillna(part[knob])
                if f"achieved_{knob}" in part
                else part[knob]
            )
            part = part.assign(**{knob: x})
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
                f[f"achieved_{knob}"].fillna(f[knob]) if f"achieved_{knob}" in f else f[knob],
                f["dev_ppl_mean"],
                yerr=[
                    (f["dev_ppl_mean"] - f["dev_ppl_ci95_low"]).fillna(0),
                    (f["dev_ppl_ci95_high"] - f["dev_ppl_mean"]).fillna(0),
                ],
                fmt="o",
                capsize=4,
                color="#2e7d32",
                label="finalists (mean, 95% t-interval over seeds)",
            )
        ax.set(
            xlabel=label, ylabel="dev word-level PPL", title=_title(f"dev PPL vs {knob}", sample)
        )
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        written += _save(fig, out, name)
        plt.close(fig)

    # one phase and one device per figure (latencies from different phases or machines are not
    # comparable), each named in its title; contended figures are drawn hollow
    done = df.dropna(subset=["dev_word_ppl", "latency_seq128_ms"])
    keys = done.assign(
        _phase=done["phase"].fillna("runs"),
        _device=done["device"].fillna("unknown device") if "device" in done else "unknown device",
    )
    for (phase, device), part in keys.groupby(["_phase", "_device"]):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        pts = list(zip(part["latency_seq128_ms"], part["dev_word_ppl"], strict=True))
        busy = part["latency_contended"].fillna(False).astype(bool).to_numpy()
        xs, ys = zip(*pts, strict=True)
        ax.scatter(np.array(xs)[~busy], np.array(ys)[~busy], color="#7f7f7f", label="runs")
        if busy.any():
            ax.scatter(
                np.array(xs)[busy],
                np.array(ys)[busy],
                facecolors="none",
                edgecolors="#7f7f7f",
                label="runs (latency contended)",
            )
        clean = [p for p, b in zip(pts, busy, strict=True) if not b]  # never contended points
        front = sorted(clean[i] for i in pareto_front(clean)) if clean else []
        if front:
            ax.plot(*zip(*front, strict=True), "-o", color="#c0504d", label="Pareto front")
        for (x, y), cell in zip(pts, part["cell"], strict=True):
            ax.annotate(str(cell), (x, y), fontsize=6, alpha=0.7)
        ax.set(
            xlabel="prefill latency, batch 1, 128 tokens (ms)",
            ylabel="dev word-level PPL",
            title=_title(f"latency vs PPL: {phase}, {device}", sample),
        )
        ax.grid(alpha=0.3)
        ax.legend()
        slug = "".join(ch if ch.isalnum() else "_" for ch in f"{phase}_{device}")[:60]
        written += _save(fig, out, f"latency_vs_ppl_{slug}")
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


def _csv(df: pd.DataFrame, path: Path) -> None:
    """A table as CSV, text cells made safe for spreadsheets (runner.study.results.csv_safe)."""
    df.map(csv_safe).to_csv(path, index=False)


def reference_table(df: pd.DataFrame, ngram: dict | None) -> pd.DataFrame:
    """Every neural run beside a count-based baseline on the same splits (an interpolated
    Kneser-Ney trigram), flagged when it is worse; on the real WikiText-2 the literature's
    anchors too (never beside sample data: those numbers are not comparable)."""
    if ngram is None or df.empty:
        return pd.DataFrame()
    sample = bool(ngram.get("sample"))
    rows = [
        {
            "model": ngram["model"],
            "kind": "n-gram (pax, same splits)",
            "params": None,
            "dev_word_ppl": ngram["dev_word_ppl"],
            "test_word_ppl": ngram["test_word_ppl"],
            "worse_than_ngram": None,
            "sample": sample,
        }
    ]
    if not sample:
        rows += [
            {**a, "kind": "literature", "dev_word_ppl": a["dev"], "test_word_ppl": a["test"]}
            for a in LITERATURE
        ]
    done = df.dropna(subset=["dev_word_ppl"])
    for _, r in done.iterrows():
        rows.append(
            {
                "model": r.get("name"),
                "kind": f"pax run ({r.get('phase') or 'run'})",
                "params": r.get("params_total"),
                "dev_word_ppl": r["dev_word_ppl"],
                "test_word_ppl": r.get("test_word_ppl"),
                "worse_than_ngram": bool(r["dev_word_ppl"] > ngram["dev_word_ppl"]),
                "sample": sample,
            }
        )
    cols = ["model", "kind", "params", "dev_word_ppl", "test_word_ppl", "worse_than_ngram"]
    return pd.DataFrame(rows).reindex(columns=[*cols, "sample"])


def ngram_for(configs: list[dict]) -> dict | None:
    """The n-gram baseline of the data the runs' tokenization came from (None: not here)."""
    for cfg in configs:
        found = data_dir_of(cfg)
        if found is not None:
            return cached_baseline(found)
    return None


def sweep_ngram(engine: Engine, sweep_id: int) -> dict | None:
    """The n-gram baseline of the data a sweep's runs were tokenized from (None: not here)."""
    configs = [json.loads(r.spec_json) for r in sweep_runs(engine, sweep_id=sweep_id)[:5]]
    return ngram_for(configs)


def write_tables(
    df: pd.DataFrame,
    curves: dict,
    out: Path,
    results_name: str = "results.csv",
    ngram: dict | None = None,
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {"results": out / results_name}
    _csv(df.reindex(columns=COLUMNS), files["results"])
    tables = {
        "early_results": early_results(df, curves),
        "ranking": ranking_table(df),
        "finalists": finalists_table(df),
        "reference": reference_table(df, ngram),
    }
    for name, t in tables.items():
        files[name] = out / f"{name}.csv"
        _csv(t, files[name])
    return {k: str(v) for k, v in files.items()} | {"plots": plots(df, curves, out / "plots")}


def write_report(engine: Engine, sweep_id: int, pricing=None) -> dict:
    """The whole report folder of a sweep: tables, plots, decisions.md, COST_SUMMARY.json."""
    with REPORT_LOCK:
        return _write_report(engine, sweep_id, pricing)


def _write_report(engine: Engine, sweep_id: int, pricing=None) -> dict:
    sw = get_sweep(engine, sweep_id=sweep_id)
    df, curves = frame_from_ledger(engine, sweep_id)
    out = report_dir(sw)
    files = write_tables(df, curves, out, ngram=sweep_ngram(engine, sweep_id))
    files["decisions"] = str(write_decisions(engine, sweep_id))
    files["cost"] = str(write_summary(engine, sweep_id, out, pricing))
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
    _csv(df.reindex(columns=COLUMNS), output)
    files = {"results": str(output)}
    if report_dir is not None:
        configs = [
            json.loads((Path(d) / "config.json").read_text())
            for d in df["run_dir"].dropna()[:5]
            if (Path(d) / "config.json").is_file()
        ]
        files |= write_tables(df, curves, Path(report_dir), ngram=ngram_for(configs))
    return files
