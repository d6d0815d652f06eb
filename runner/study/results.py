"""The results table: one row per run, the same columns from the ledger (GET /results.csv) and
from run directories (scripts/aggregate_results.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from runner.ledger.results import results_rows

COLUMNS = [
    "run_id",
    "name",
    "sweep_id",
    "phase",
    "status",
    "seed",
    "total_params",
    "embedding_ratio",
    "glu_expansion",
    "vocab_size",
    "tied_lm_head",
    "d_model",
    "n_layers",
    "n_heads",
    "head_dim",
    "ffn_hidden",
    "params_total",
    "non_embedding_params",
    "achieved_embedding_ratio",
    "vocab_matrices_share",
    "achieved_glu_expansion",
    "lr",
    "max_tokens",
    "tokens_seen",
    "passes",
    "final_model",
    "final_model_tokens",
    "last_eval_dev_word_ppl",
    "best_interval_dev_word_ppl",
    "dev_token_ppl",
    "dev_word_ppl",
    "dev_bits_per_byte",
    "test_token_ppl",
    "test_word_ppl",
    "test_bits_per_byte",
    "dev_word_ppl_nonoverlap",
    "test_word_ppl_nonoverlap",
    "smallbench_macro_acc",
    "smallbench_macro_stderr",
    "smallbench_macro_acc_norm",
    "smallbench_untrained_mean",
    "smallbench_untrained_sd",
    "smallbench_vs_untrained",
    "smallbench_unigram_acc",
    "smallbench_suite",
    "latency_seq128_ms",
    "latency_seq512_ms",
    "decode_ms_per_token_ctx128",
    "decode_ms_per_token_ctx512",
    "inference_memory_bytes",
    "inference_memory_kind",
    "latency_contended",
    "latency_shared_runs",
    "device",
    "peak_memory_bytes",
    "memory_kind",
    "train_tokens_per_s",
    "mfu",
    "gpu_hours",
    "cost_usd",
    "sample",
    "exit_reason",
    "run_dir",
]


UNTRAINED = ("smallbench", "reference", "untrained", "macro")


def _get(doc: dict | None, *path: str) -> Any:
    for p in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(p)
    return doc


def row(*, config: dict, plan: dict | None, metrics: dict | None, **known: Any) -> dict:
    """A results row from a run's config, plan and (when finished) metrics.json."""
    m = metrics or {}
    model = config.get("model", {})
    plan = plan or m.get("plan") or {}
    out = {c: None for c in COLUMNS}
    out.update(
        {
            "name": config.get("name"),
            "seed": _get(config, "runtime", "seed"),
            "total_params": model.get("total_params"),
            "embedding_ratio": model.get("embedding_ratio"),
            "glu_expansion": model.get("glu_expansion"),
            "vocab_size": model.get("vocab_size"),
            "tied_lm_head": model.get("tied_lm_head"),
            "d_model": plan.get("d_model"),
            "n_layers": plan.get("n_layers"),
            "n_heads": plan.get("n_heads"),
            "ffn_hidden": plan.get("ffn_hidden"),
            "params_total": plan.get("total"),
            # the transformer body (attention, SwiGLU, norms): what the share axis trades away
            "non_embedding_params": (
                plan["total"] - plan["embedding"] - plan.get("head", 0)
                if plan.get("total") and plan.get("embedding") is not None
                else None
            ),
            "achieved_embedding_ratio": plan.get("embedding_ratio"),
            "head_dim": plan.get("head_dim"),
            # (embedding + untied head) / total: untied at share 0.25 holds ~51% in vocab
            # matrices, which the embedding share alone does not show
            "vocab_matrices_share": (
                (plan["embedding"] + plan.get("head", 0)) / plan["total"]
                if plan.get("total") and plan.get("embedding") is not None
                else None
            ),
            "achieved_glu_expansion": plan.get("glu_expansion"),
            "lr": _get(config, "optim", "lr"),
            "max_tokens": config.get("max_tokens"),
            "tokens_seen": _get(m, "training", "tokens_seen"),
            "passes": _get(m, "training", "passes"),
            # the model the final evaluation scored (the last, the end of a wsd decay, or the
            # best interval dev eval), the tokens it had seen, and what the last interval eval
            # read (a turned curve shows)
            "final_model": _get(m, "final_model", "kind"),
            "final_model_tokens": _get(m, "final_model", "tokens"),
            "last_eval_dev_word_ppl": _get(m, "final_model", "last_eval", "word_ppl"),
            # the best interval eval, beside the scored model (with wsd: the annealed end)
            "best_interval_dev_word_ppl": _get(m, "final_model", "best_eval", "word_ppl"),
            "status": _get(m, "run", "status"),
            "exit_reason": _get(m, "run", "exit_reason"),
            "run_dir": _get(m, "run", "run_dir"),
            "smallbench_macro_acc": _get(m, "smallbench", "macro_acc"),
            "smallbench_macro_stderr": _get(m, "smallbench", "macro_stderr"),
            "smallbench_macro_acc_norm": _get(m, "smallbench", "macro_acc_norm"),
            # what the score means: untrained models of the same shape (5 inits) and a unigram
            "smallbench_untrained_mean": _get(m, *UNTRAINED, "mean"),
            "smallbench_untrained_sd": _get(m, *UNTRAINED, "sd"),
            "smallbench_vs_untrained": _get(m, "smallbench", "vs_untrained"),
            "smallbench_unigram_acc": _get(m, "smallbench", "reference", "unigram", "macro_acc"),
            # "smallbench" (the study's 9 paradigms) or "all" (BLiMP's 67)
            "smallbench_suite": _get(m, "smallbench", "suite", "selection"),
            "latency_seq128_ms": _get(m, "latency", "seq128", "median_ms"),
            "latency_seq512_ms": _get(m, "latency", "seq512", "median_ms"),
            "decode_ms_per_token_ctx128": _get(m, "decode_latency", "ctx128", "ms_per_token"),
            "decode_ms_per_token_ctx512": _get(m, "decode_latency", "ctx512", "ms_per_token"),
            "inference_memory_bytes": _get(m, "inference_memory", "bytes"),
            "inference_memory_kind": _get(m, "inference_memory", "kind"),
            "latency_contended": _get(m, "latency_contended"),
            # runs on the same GPU while it was measured (the ledger's count; None: no device)
            "latency_shared_runs": _get(m, "latency_shared_runs"),
            "device": _get(m, "provenance", "device_name") or _get(m, "provenance", "device"),
            # the training run's peak (RSS on CPU): not an inference figure
            "peak_memory_bytes": _get(m, "memory", "bytes"),
            "memory_kind": _get(m, "memory", "kind"),
            "train_tokens_per_s": _get(m, "throughput", "train_tokens_per_s"),
            "mfu": _get(m, "throughput", "mfu"),
            "sample": _get(m, "provenance", "sample"),
            "gpu_hours": 0.0,
            "cost_usd": 0.0,
        }
    )
    # not a CSV column: each pair's right/wrong per task, for the bootstrap over seeds and items
    out["smallbench_hits"] = _get(m, "smallbench", "hits")
    for split in ("dev", "test"):
        for k in ("token_ppl", "word_ppl", "bits_per_byte"):
            out[f"{split}_{k}"] = _get(m, split, k)
        # strided is the main number; the non-overlapping one (the interval evals' windowing)
        # beside it, or the main one when the run had no strided eval
        out[f"{split}_word_ppl_nonoverlap"] = _get(m, split, "nonoverlap", "word_ppl") or _get(
            m, split, "word_ppl"
        )
    out.update({k: v for k, v in known.items() if k in out and v is not None})
    return out


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, +, -, @ first) gets a leading
    apostrophe; numbers are left alone."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows({k: csv_safe(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def ledger_rows(
    engine: Engine, sweep_id: int | None = None, *, after_id: int | None = None, limit=None
) -> list[dict]:
    """Results rows (plus cell, axis, baseline flag) of every run of a sweep, or of all; a
    page of them with `after_id`/`limit`."""
    rows = []
    for d in results_rows(engine, sweep_id=sweep_id, after_id=after_id, limit=limit):
        r = row(
            config=d["config"],
            plan=d["plan"],
            metrics=d["metrics"],
            run_id=d["id"],
            name=d["name"],
            sweep_id=d["sweep_id"],
            phase=d["phase"],
            status=d["status"],
            tokens_seen=d["tokens_seen"],
            gpu_hours=d["gpu_hours"],
            cost_usd=d["cost_usd"],
            exit_reason=d["exit_reason"],
            run_dir=d["run_dir"],
        )
        r.update(cell=d["cell"] or d["name"], axis=d["axis"], is_baseline=bool(d["is_baseline"]))
        rows.append(r)
    return rows


def log_rows(log_dir: Path) -> tuple[list[dict], dict]:
    """(results rows, dev curves) from run directories: every */metrics.json under log_dir."""
    rows, curves = [], {}
    for i, path in enumerate(sorted(Path(log_dir).rglob("metrics.json")), 1):
        m = json.loads(path.read_text())
        cfg = m.get("config") or {}
        r = row(config=cfg, plan=m.get("plan"), metrics=m, run_id=i, run_dir=str(path.parent))
        r.update(cell=cfg.get("name"), axis=None, is_baseline=False)
        rows.append(r)
        curves[i] = [(int(e["tokens"]), float(e["word_ppl"])) for e in m.get("dev_curve", [])]
    return rows, curves
