#!/usr/bin/env python3
"""The one GPU check: pax's throughput table, a ranking run end to end and the packing benchmark,
in under 5 minutes on one H100/H200 (the ranking run eager, then compiled, counting recompiles
after warm-up). Prints one JSON document as its last line.

    bash bench/gpu_check.sh                   # on a GPU machine (installs carried wheels first)
    python bench/gpu_check.py --device cpu --quick    # the smoke test the suite runs

It needs torch and CUDA, not the project installed: the trainer's pure-Python dependencies
travel as wheels (`make gpu-wheels` puts them in .whl/, see docs/gpu.md), and the data as the
`data/` folder (WikiText-2 or its sample, SmallBench); a missing 16k tokenization is made here.

Every part runs in its own process under a deadline taken from one budget, so a compile that
hangs costs that part, not the check: what did not fit says "skipped" and why. Parts go in order
of what they tell: eager throughput, the ranking run, packing, then the compiled modes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# karpathy/nanoGPT at the baseline's size on one H200 (shared/README.md, 2026-11-26)
NANOGPT = {"b16_eager": 181_346, "b16_compiled": 236_095, "b128_eager": 1_271_348}
TARGETS = {  # issue 13's targets (tokens/s unless named)
    "b16_eager": NANOGPT["b16_eager"],
    "b16_compiled_or_graphs": 1.3 * NANOGPT["b16_compiled"],
    "b128_eager": NANOGPT["b128_eager"],
    "b128_compiled": 1.5e6,
    "b128_compile_s": 60.0,
    # issue 29: the study's own loop at its benchmark's speed
    "ranking_run_wall_s": 15.0,
    "loop_b16_tokens_per_s": 750_000,
    "recompiles_after_warmup": 0,
    "packing_8_speedup": 4.0,
}


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def run_json(cmd: list[str], budget: Budget, cap_s: float, env: dict | None = None) -> dict:
    """Run a part; its last stdout line is JSON. Errors and timeouts are results, not crashes."""
    timeout = min(cap_s, budget.left())
    if timeout < 5:
        return {"skipped": "the check's time budget is spent"}
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s", "wall_s": time.monotonic() - t0}
    wall = time.monotonic() - t0
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}", "stderr_tail": p.stderr[-2000:], "wall_s": wall}
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"error": "no JSON on the last line", "stdout_tail": p.stdout[-2000:]}
    return {"wall_s": wall, **out} if isinstance(out, dict) else {"wall_s": wall, "result": out}


def throughput(args, budget: Budget, batch: int, mode: str, deterministic: bool = False) -> dict:
    steps, warmup = (3, 1) if args.quick else (40, 8)
    cmd = [
        sys.executable, "bench/train_throughput.py", "--device", args.device,
        "--shapes", args.shape, "--modes", mode, "--batch", str(batch),
        "--steps", str(steps), "--warmup", str(warmup), "--peak-s", "0.3",
    ]  # fmt: skip
    if deterministic:
        cmd.append("--deterministic")
    res = run_json(cmd, budget, cap_s=150)
    if "results" not in res:
        return res
    row = res["results"][args.shape]["modes"][0]
    return {
        "batch": batch,
        "mode": mode,
        "deterministic": deterministic,
        "tokens_per_s": row["tokens_per_s"],
        "loss_trace": row["loss_trace"],
        "step_ms": row["step_s_median"] * 1e3,
        "warmup_or_compile_s": row["warmup_s"],
        "mfu": row["mfu_vs_bf16_peak"],
        "device_name": res.get("device_name"),
        "matmul_peak_tflops_bf16": res["matmul_peak_gflops"]["bf16"] / 1e3,
    }


def prepare_data(args) -> dict:
    """The 16k tokenization the study's configs read; made from data/wikitext-2 when missing."""
    if args.quick:
        return {"skipped": "--quick uses the config given with --ranking-config"}
    tok = ROOT / "data" / "lm_tokenized" / "sp16000" / "manifest.json"
    if tok.is_file():
        return {"tokenized": "present"}
    t0 = time.monotonic()
    if not (ROOT / "data" / "wikitext-2" / "train.txt").is_file():
        mirror = os.environ.get("PAX_DATA_MIRROR") or str(ROOT.parent / "shared" / "data")
        subprocess.run(
            [sys.executable, "scripts/download_wikitext.py", "--mirror", mirror],
            cwd=ROOT,
            check=True,
        )
    subprocess.run(
        [sys.executable, "scripts/preprocess_lm.py", "--vocab_size", "16000"], cwd=ROOT, check=True
    )
    return {"tokenized": "made", "wall_s": time.monotonic() - t0}


def ranking_run(args, budget: Budget) -> dict:
    """run_experiment.py as the study runs it, its wall time split by phase."""
    logs = Path(tempfile.mkdtemp(prefix="pax-gpu-check-"))
    cmd = [
        sys.executable, "run_experiment.py", "--config", args.ranking_config,
        "--exp", args.ranking_exp, "--logs", str(logs), "--no-progress",
    ]  # fmt: skip
    for s in args.ranking_set:
        cmd += ["--set", s]
    t0 = time.monotonic()
    timeout = min(200.0, budget.left())
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    wall = time.monotonic() - t0
    found = sorted(logs.glob("**/metrics.json"))
    if p.returncode != 0 or not found:
        return {"error": f"exit {p.returncode}", "stderr_tail": p.stderr[-2000:], "wall_s": wall}
    m = json.loads(found[-1].read_text())
    return {
        "wall_s": wall,
        "timings": m.get("timings"),
        "tokens": m["training"]["tokens_seen"],
        "train_tokens_per_s": m["training"]["tokens_per_s"],
        "mfu": (m.get("throughput") or {}).get("mfu"),
        "dev_word_ppl": (m.get("dev") or {}).get("word_ppl"),
        "device_name": m["provenance"]["device_name"],
        "sample_data": m["provenance"]["sample"],
        "deterministic": m["config"]["runtime"]["deterministic"],
        # frames compiled, and how many after warm-up (periodic and final evals included)
        "compile": m.get("compile"),
    }


def compiled_ranking_runs(args, budget: Budget) -> list[dict]:
    """The same ranking run with the training step compiled (static shapes; evaluation eager),
    and on CUDA with CUDA graphs too: wall time against eager, and the recompile count."""
    modes = ["default"] + (["reduce-overhead"] if args.device == "cuda" else [])
    out = []
    for mode in modes:
        saved = args.ranking_set
        args.ranking_set = [*saved, "runtime.compile=true", f"runtime.compile_mode={mode}"]
        out.append({"mode": mode, **ranking_run(args, budget)})
        args.ranking_set = saved
    return out


def packing(args, budget: Budget) -> dict:
    counts = ["1", "2"] if args.quick else ["1", "2", "4", "8"]
    seconds = "1" if args.quick else "12"
    cmd = [
        sys.executable, "bench/packing.py", "--device", args.device, "--shape", args.shape,
        "--seconds", seconds, "--counts", *counts,
    ]  # fmt: skip
    return run_json(cmd, budget, cap_s=150)


def determinism(args, budget: Budget, eager_b16: dict) -> dict:
    """runtime.deterministic on: the same seed twice must give the same loss curve on this
    device, and what it costs against the default (off on CUDA)."""
    first = throughput(args, budget, 16, "bf16-eager", deterministic=True)
    second = throughput(args, budget, 16, "bf16-eager", deterministic=True)
    if "tokens_per_s" not in first or "tokens_per_s" not in second:
        return {"error": first.get("error") or second.get("error") or "skipped"}
    base = eager_b16.get("tokens_per_s")
    return {
        "same_loss_curve": first["loss_trace"] == second["loss_trace"],
        "tokens_per_s": first["tokens_per_s"],
        "cost_vs_default": 1 - first["tokens_per_s"] / base if base else None,
    }


def batch_study(args, budget: Budget) -> dict:
    """Dev PPL after the configured budget at batch 16, 64 and 128 (same tokens, same LR
    schedule in tokens): the evidence for the GPU default of data.batch_size."""
    out = {}
    for b in (16, 64, 128):
        saved = args.ranking_set
        args.ranking_set = [*saved, f"data.batch_size={b}", "eval.smallbench=false"]
        r = ranking_run(args, budget)
        args.ranking_set = saved
        out[str(b)] = {k: r.get(k) for k in ("dev_word_ppl", "wall_s", "error", "skipped")}
    return out


def verdicts(doc: dict) -> dict:
    """Each target of issue 13 against what was measured (None: not measured)."""
    tp = {(r.get("batch"), r.get("mode")): r for r in doc["throughput"]}

    def tps(batch, mode):
        return tp.get((batch, mode), {}).get("tokens_per_s")

    best_b16 = max(
        (v for v in (tps(16, "bf16-compiled"), tps(16, "bf16-reduce-overhead")) if v), default=None
    )
    pack = {r["runs"]: r for r in (doc["packing"].get("results") or [])}
    run = doc["ranking_run"]
    runs = [r for r in [run, *doc.get("compiled_ranking_runs", [])] if "error" not in r]
    walls = [r["wall_s"] for r in runs if r.get("wall_s")]
    loops = [r["train_tokens_per_s"] for r in runs if r.get("train_tokens_per_s")]
    recompiles = [(r.get("compile") or {}).get("recompiles_after_warmup") for r in runs]
    recompiles = [x for x in recompiles if x is not None]
    measured = {
        "b16_eager": tps(16, "bf16-eager"),
        "b16_compiled_or_graphs": best_b16,
        "b128_eager": tps(128, "bf16-eager"),
        "b128_compiled": tps(128, "bf16-compiled"),
        "b128_compile_s": tp.get((128, "bf16-compiled"), {}).get("warmup_or_compile_s"),
        "ranking_run_wall_s": min(walls) if walls else None,
        "loop_b16_tokens_per_s": max(loops) if loops else None,
        "recompiles_after_warmup": max(recompiles) if recompiles else None,
        "packing_8_speedup": pack.get(8, {}).get("speedup_vs_one"),
    }
    out = {}
    for key, target in TARGETS.items():
        got = measured[key]
        lower_is_better = key.endswith("_s")
        met = None if got is None else (got <= target if lower_is_better else got >= target)
        out[key] = {"target": target, "measured": got, "met": met}
    return out


def run_study(args, budget: Budget) -> dict:
    """The study part: a failure is a result, never the end of the check."""
    sys.path.insert(0, str(ROOT))
    try:
        from bench.gpu_study import study

        return study(args, budget)
    except Exception as e:  # the check still prints its JSON
        return {"error": f"{type(e).__name__}: {e}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="Tiny shapes and runs (CPU smoke test).")
    ap.add_argument("--budget-s", type=float, default=285.0)
    ap.add_argument("--autotune", action="store_true", help="Also max-autotune-no-cudagraphs.")
    ap.add_argument("--ranking-config", default="configs/embed_ratio.yaml")
    ap.add_argument("--ranking-exp", default="emb35")
    ap.add_argument("--ranking-set", action="append", default=[], help="--set for the run.")
    ap.add_argument(
        "--batch-study", action="store_true", help="Also dev PPL at batch 16/64/128 (~2 min)."
    )
    ap.add_argument(
        "--study",
        action="store_true",
        help="Also a whole plan through pax serve with slots, to its report (bench/gpu_study.py).",
    )
    ap.add_argument("--study-plan", help="The plan (default configs/plan_10m.yaml).")
    ap.add_argument("--study-scale", type=float, default=0.05, help="Its token budgets times this.")
    ap.add_argument("--study-slots", type=int, default=4, help="Runs at once on the GPU.")
    ap.add_argument("--study-gpu", default="H200", help="The price table's GPU to price it at.")
    ap.add_argument(
        "--study-lr-grid",
        action="store_true",
        help="Keep the plan's ranking.lr_grid in the scaled run (3x its ranking runs: past "
        "5 minutes); without it, the forecast still counts the grid's runs.",
    )
    ap.add_argument(
        "--study-only", action="store_true", help="Only the study (its own 5-minute budget)."
    )
    args = ap.parse_args()
    args.shape = "tiny" if args.quick else "baseline"
    budget = Budget(args.budget_s)
    t0 = time.monotonic()
    doc: dict = {"check": "gpu_check", "quick": args.quick, "device": args.device}
    if args.study_only:
        doc["study"] = run_study(args, budget)
        doc["wall_s"] = time.monotonic() - t0
        print(json.dumps(doc))
        return
    doc["throughput"] = [throughput(args, budget, b, "bf16-eager") for b in (16, 128)]
    try:
        doc["data"] = prepare_data(args)
        doc["ranking_run"] = ranking_run(args, budget)
    except subprocess.CalledProcessError as e:
        doc["data"] = {"error": f"data preparation failed: {e}"}
        doc["ranking_run"] = {"skipped": "no data"}
    if "error" not in doc["ranking_run"] and "skipped" not in doc["ranking_run"]:
        doc["compiled_ranking_runs"] = compiled_ranking_runs(args, budget)
    doc["packing"] = packing(args, budget)
    if not args.quick:
        compiled = [(16, "bf16-compiled"), (128, "bf16-compiled")]
        if args.device == "cuda":
            compiled.insert(1, (16, "bf16-reduce-overhead"))
        if args.autotune:
            compiled.append((16, "bf16-autotune"))
        doc["throughput"] += [throughput(args, budget, b, m) for b, m in compiled]
    doc["determinism"] = determinism(args, budget, doc["throughput"][0])
    if args.batch_study:
        doc["batch_study"] = batch_study(args, budget)
    if args.study:
        doc["study"] = run_study(args, Budget(args.budget_s))  # its own budget, after the rest
    doc["targets"] = verdicts(doc)
    doc["wall_s"] = time.monotonic() - t0
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
