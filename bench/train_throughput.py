#!/usr/bin/env python3
"""Training throughput: tokens/s, step time and MFU for the study's shapes, in fp32 and bf16,
eager and compiled, against this machine's own bf16 (and fp32) matmul peak measured in the same
process. Prints one JSON document as its last line.

    python bench/train_throughput.py                 # both shapes, all four modes
    python bench/train_throughput.py --modes bf16-compiled --shapes 10x224 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from trainer.evaluation.profile import matmul_peak, sync  # noqa: E402
from trainer.model import GPT, LossPlan, ModelConfig  # noqa: E402
from trainer.params import plan  # noqa: E402

SHAPES = {
    # the study's baseline plan: 10M, V=16k, tied, embedding 0.35, GLU 2.66
    "baseline": lambda: ModelConfig.from_plan(plan(10_000_000, 0.35, 2.66, 16000, True), 256),
    # the reference shape: 10 layers x 224 wide (7 heads of 32), SwiGLU 2.66x, V=16k tied
    "10x224": lambda: ModelConfig(16000, 224, 10, 7, round(2.66 * 224), True, 256),
    # a smoke-test shape (bench/gpu_check.py --quick on CPU)
    "tiny": lambda: ModelConfig(512, 32, 2, 4, 80, True, 256),
}
MODES = ("fp32-eager", "bf16-eager", "fp32-compiled", "bf16-compiled")
# compiled kinds beyond these four: CUDA graphs for small batches, and autotuned kernels
EXTRA_MODES = ("bf16-reduce-overhead", "bf16-autotune")
COMPILE_MODES = {
    "compiled": "default",
    "reduce-overhead": "reduce-overhead",
    "autotune": "max-autotune-no-cudagraphs",
}


def bench(
    cfg: ModelConfig, mode: str, device: torch.device, batch: int, seq: int, steps: int, warmup: int
) -> dict:
    torch.manual_seed(0)
    losses = []
    model = GPT(cfg).to(device)
    model.loss_plan = LossPlan.for_device(device, cfg.vocab_size)
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=1e-3,
        weight_decay=0.1,
        **({"fused": True} if device.type == "cuda" else {"foreach": True}),
    )
    dtype, kind = mode.split("-", 1)
    fwd = model.compiled(COMPILE_MODES[kind]) if kind in COMPILE_MODES else model
    ctx = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if dtype == "bf16"
        else (lambda: torch.autocast(device.type, enabled=False))
    )
    x = torch.randint(0, cfg.vocab_size, (batch, seq + 1), device=device)
    inp, tgt = x[:, :-1], x[:, 1:]
    t_compile = time.perf_counter()
    times, phases = [], {"forward_backward": 0.0, "optimizer": 0.0}
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        with ctx():
            _, loss = fwd(inp, tgt)
        losses.append(loss.detach().clone())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        sync(device)
        t1 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        t2 = time.perf_counter()
        if i == warmup - 1:
            t_compile = time.perf_counter() - t_compile
        if i >= warmup:
            times.append(t2 - t0)
            phases["forward_backward"] += t1 - t0
            phases["optimizer"] += t2 - t1
    times.sort()
    step = times[len(times) // 2]
    tps = batch * seq / step
    flops = model.flops_per_token(seq)
    return {
        "mode": mode,
        "step_s_median": step,
        "tokens_per_s": tps,
        "flops_per_token": flops,
        "achieved_gflops": tps * flops / 1e9,
        "warmup_s": t_compile,
        "share_optimizer": phases["optimizer"] / sum(phases.values()),
        "loss_trace": [float(v) for v in losses],  # same seed, same device: compare runs
        "params": sum(p.numel() for p in model.parameters()),
    }


def profile_breakdown(cfg: ModelConfig, device: torch.device, batch: int, seq: int) -> dict:
    """Where a bf16 eager step goes: top operators by self CPU/GPU time."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=device.type == "cpu")
    x = torch.randint(0, cfg.vocab_size, (batch, seq + 1), device=device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    with profile(activities=acts) as prof:
        for _ in range(2):
            step()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    rows = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in rows) or 1
    return {e.key: round(getattr(e, key) / total, 4) for e in rows[:12]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=[*MODES, *EXTRA_MODES])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", action="store_true", help="Add an operator breakdown.")
    ap.add_argument("--peak-s", type=float, default=2.0, help="Seconds per matmul-peak probe.")
    ap.add_argument(
        "--deterministic", action="store_true", help="Deterministic algorithms (its price)."
    )
    args = ap.parse_args()
    if args.deterministic:  # as trainer.runtime.seed_everything does, before CUDA starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as the trainer (runtime.tune_backend)
    peak_bf16 = matmul_peak(device, torch.bfloat16, seconds=args.peak_s)
    peak_fp32 = matmul_peak(device, torch.float32, seconds=args.peak_s)
    results = {}
    for shape in args.shapes:
        cfg = SHAPES[shape]()
        rows = []
        for mode in args.modes:
            r = bench(cfg, mode, device, args.batch, args.seq, args.steps, args.warmup)
            r["mfu_vs_bf16_peak"] = r["achieved_gflops"] * 1e9 / peak_bf16
            r["mfu_vs_own_dtype_peak"] = (
                r["achieved_gflops"] * 1e9 / (peak_bf16 if mode.startswith("bf16") else peak_fp32)
            )
            rows.append(r)
            print(
                f"{shape:>8} {mode:<14} {r['tokens_per_s']:>9,.0f} tok/s "
                f"step {r['step_s_median']:.3f}s MFU(bf16 peak) {r['mfu_vs_bf16_peak']:.1%}",
                file=sys.stderr,
                flush=True,
            )
        results[shape] = {
            "d_model": cfg.d_model,
            "n_layers": cfg.n_layers,
            "ffn_hidden": cfg.ffn_hidden,
            "vocab_size": cfg.vocab_size,
            "modes": rows,
        }
        if args.profile:
            results[shape]["bf16_eager_breakdown"] = profile_breakdown(
                cfg, device, args.batch, args.seq
            )
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "device": str(device),
                "device_name": (
                    torch.cuda.get_device_name(device)
                    if device.type == "cuda"
                    else platform.processor() or platform.machine()
                ),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "batch": args.batch,
                "deterministic": args.deterministic,
                "seq": args.seq,
                "matmul_peak_gflops": {"bf16": peak_bf16 / 1e9, "fp32": peak_fp32 / 1e9},
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
