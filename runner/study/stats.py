"""The study's statistics, pure Python (the service never needs pandas for them): 95%
t-intervals over seeds, a bootstrap over seeds and items for SmallBench, finalist summaries,
the latency-PPL Pareto front."""

from __future__ import annotations

import math
import statistics

import numpy as np

from trainer.evaluation.smallbench_band import against_band

# two-sided 95% t critical values by degrees of freedom (1..30); normal beyond
T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(dof: int) -> float:
    return T95[dof - 1] if 1 <= dof <= len(T95) else 1.96


def finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def mean_ci(values) -> dict:
    """n, mean, sample std and the 95% t-interval of the mean (nan bounds under 2 values)."""
    vals = finite(values)
    n = len(vals)
    mean = statistics.fmean(vals) if n else math.nan
    std = statistics.stdev(vals) if n > 1 else 0.0
    half = t95(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def finalist_stats(rows: list[dict]) -> list[dict]:
    """One summary per finalist cell from results-table rows (`runner.study.results.row`):
    dev and test word-level PPL over seeds with their 95% intervals, best dev first. A seed
    that was killed or did not finish is counted, never averaged: its truncated curve is not a
    sample of the finalist's PPL."""
    axis_of = {r["cell"]: r["axis"] for r in rows if r.get("phase") != "finalists"}
    by_cell: dict[str, list[dict]] = {}
    left_out: dict[str, int] = {}
    for r in rows:
        if r.get("phase") != "finalists":
            continue
        if r.get("status") != "succeeded":
            left_out[r["cell"]] = left_out.get(r["cell"], 0) + 1
            by_cell.setdefault(r["cell"], [])
            continue
        by_cell.setdefault(r["cell"], []).append(r)
    out = []
    for cell, g in by_cell.items():
        if not g:
            continue
        dev = mean_ci(r["dev_word_ppl"] for r in g)
        test = mean_ci(r["test_word_ppl"] for r in g)
        first = g[0]
        out.append(
            {
                "cell": cell,
                "seeds_left_out": left_out.get(cell, 0),
                "axis": axis_of.get(cell),
                "embedding_ratio": first["embedding_ratio"],
                "glu_expansion": first["glu_expansion"],
                # what the planner built (the plots' x axes are achieved values)
                "achieved_embedding_ratio": first.get("achieved_embedding_ratio"),
                "achieved_glu_expansion": first.get("achieved_glu_expansion"),
                "vocab_size": first["vocab_size"],
                "tied_lm_head": first["tied_lm_head"],
                "seeds": dev["n"],
                "dev_ppl_mean": dev["mean"],
                "dev_ppl_std": dev["std"],
                "dev_ppl_ci95_low": dev["low"],
                "dev_ppl_ci95_high": dev["high"],
                "test_ppl_mean": test["mean"],
                "test_ppl_std": test["std"],
                "test_ppl_ci95_low": test["low"],
                "test_ppl_ci95_high": test["high"],
                "smallbench_mean": _mean(r["smallbench_macro_acc"] for r in g),
                # over seeds (different inits): model noise, which the per-run item SE leaves out
                **{
                    f"smallbench_{k}": v
                    for k, v in _ci(r["smallbench_macro_acc"] for r in g).items()
                },
                # over seeds and items at once: both kinds of noise in one standard error
                **{
                    f"smallbench_boot_{k}": v
                    for k, v in smallbench_bootstrap([r.get("smallbench_hits") for r in g]).items()
                },
                # untrained models of the same shape: the score's floor is a band, not 0.5
                **_untrained_band(g),
                # contended latencies (another run on the device then) never enter the mean
                "latency_seq128_ms": _mean(
                    r["latency_seq128_ms"] for r in g if not r.get("latency_contended")
                ),
                "latency_contended_seeds": sum(bool(r.get("latency_contended")) for r in g),
                "sample": any(bool(r.get("sample")) for r in g),
            }
        )
    return sorted(out, key=lambda f: (math.isnan(f["dev_ppl_mean"]), f["dev_ppl_mean"]))


def paired_difference(rows: list[dict], a: str, b: str, key: str = "dev_word_ppl") -> dict:
    """`b` minus `a` seed by seed (runs with the same seed see the same batches, so pairing
    removes the data-order noise the unpaired intervals carry): n, mean, std and the 95%
    t-interval of the differences, over the seeds both cells finished."""
    by = {}
    for r in rows:
        if r.get("phase") == "finalists" and r.get("status") == "succeeded":
            v = r.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                by.setdefault(r["cell"], {})[r["seed"]] = float(v)
    seeds = sorted(set(by.get(a, {})) & set(by.get(b, {})))
    return {**mean_ci(by[b][s] - by[a][s] for s in seeds), "seeds": seeds}


BOOTSTRAP = 1000  # resamples, with a fixed seed: the same report from the same ledger


def smallbench_bootstrap(hit_sets: list, draws: int = BOOTSTRAP) -> dict:
    """SmallBench macro accuracy over seeds, with its standard error and 95% percentile interval
    from a two-level bootstrap: seeds drawn with replacement, then items within each task (the
    same items for every drawn seed: the suite is shared). One seed: items only, `seeds` says
    so. `hit_sets`: per seed, {task: "0101..."} (runs without them are left out)."""
    sets = [h for h in hit_sets if isinstance(h, dict) and h]
    if not sets:
        return {"se": None, "low": None, "high": None, "seeds": 0}
    tasks = sorted(set.intersection(*(set(h) for h in sets)))
    tasks = [t for t in tasks if all(len(h[t]) == len(sets[0][t]) and h[t] for h in sets)]
    if not tasks:
        return {"se": None, "low": None, "high": None, "seeds": 0}
    rng = np.random.default_rng(0)
    n_seeds = len(sets)
    seeds = rng.integers(0, n_seeds, size=(draws, n_seeds))
    macro = np.zeros(draws)
    for t in tasks:
        hits = np.array([[c == "1" for c in h[t]] for h in sets], dtype=np.float64)
        n = hits.shape[1]
        items = rng.integers(0, n, size=(draws, n))
        # per draw: the drawn seeds' hits on the drawn items, averaged
        per_seed_item = hits[seeds[:, :, None], items[:, None, :]]
        macro += per_seed_item.mean(axis=(1, 2))
    out = sorted((macro / len(tasks)).tolist())
    return {
        "se": statistics.stdev(out),
        "low": out[int(0.025 * draws)],
        "high": out[int(0.975 * draws) - 1],
        "seeds": n_seeds,
    }


def _untrained_band(g: list[dict]) -> dict:
    """The untrained band of a finalist's shape (every seed has the same one), and where the
    finalist's mean SmallBench score lies against it (mean +/- 2 sd of 5 untrained inits)."""
    band = next((r for r in g if _finite(r.get("smallbench_untrained_mean"))), None)
    if band is None:
        return {"smallbench_untrained_mean": None, "smallbench_untrained_sd": None,
                "smallbench_vs_untrained": None, "smallbench_unigram_acc": None,
                "smallbench_suite": None}  # fmt: skip
    mean, sd = band["smallbench_untrained_mean"], band["smallbench_untrained_sd"] or 0.0
    score = _mean(r["smallbench_macro_acc"] for r in g)
    vs = against_band(score, mean, sd) if math.isfinite(score) else None
    return {
        "smallbench_untrained_mean": mean,
        "smallbench_untrained_sd": sd,
        "smallbench_vs_untrained": vs,
        "smallbench_unigram_acc": band.get("smallbench_unigram_acc"),
        "smallbench_suite": band.get("smallbench_suite"),
    }


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _ci(values) -> dict:
    c = mean_ci(values)
    return {"std": c["std"] if c["n"] > 1 else None, "ci95_low": c["low"], "ci95_high": c["high"]}


def _mean(values) -> float:
    vals = finite(values)
    return statistics.fmean(vals) if vals else math.nan


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both latency and PPL (lower is better)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front
