#!/usr/bin/env python3
"""Packing: aggregate training tokens/s of 1, 2, 4 and 8 runs at once on one device.

Each run is its own process (as PAX_GPU_SLOTS or `pax worker --slots` start them) training the
study's baseline shape at the study's batch (16 x 256) with the trainer's own pieces: model,
device loss plan, fused AdamW, bf16 autocast, clipping. The processes warm up, say so, wait
for the word to start together, count the steps they finish in `--seconds`, and report; the
aggregate is the sum of their tokens/s. Prints one JSON document as its last line.

    python bench/packing.py                        # 1 2 4 8 runs, 20 s each, on the GPU
    python bench/packing.py --device cpu --counts 1 2 --shape tiny --seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(args: argparse.Namespace) -> None:
    import torch

    from bench.train_throughput import SHAPES
    from trainer.model import GPT, LossPlan

    device = torch.device(args.device)
    if device.type == "cpu":  # the cores are split between the runs, as the OS would
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.count))
    cfg = SHAPES[args.shape]()
    torch.manual_seed(args.index)
    model = GPT(cfg).to(device)
    model.loss_plan = LossPlan.for_device(device, cfg.vocab_size)
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, **fused)
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), device=device)

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    print("ready", flush=True)
    sys.stdin.readline()  # a common start: every run is warm when any of them counts
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        for _ in range(10):  # between checks of the clock, so the host does not sync per step
            loss = step()
        steps += 10
        float(loss)  # one sync per 10 steps keeps the measured window honest
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    print(json.dumps({"tokens_per_s": steps * args.batch * args.seq / dt, "peak_bytes": mem}))


def run_count(args: argparse.Namespace, n: int) -> dict:
    procs = [
        subprocess.Popen(
            [
                sys.executable, __file__, "--child", "--index", str(i), "--count", str(n),
                "--device", args.device, "--shape", args.shape, "--batch", str(args.batch),
                "--seq", str(args.seq), "--seconds", str(args.seconds),
                "--warmup", str(args.warmup),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]  # fmt: skip
    for p in procs:  # each has imported torch, built its model and warmed up
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"a packed run failed before it was ready (exit {p.wait()})")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    rows = []
    for p in procs:
        out, _ = p.communicate(timeout=args.seconds + 600)
        if p.returncode != 0:
            raise SystemExit(f"a packed run failed (exit {p.returncode})")
        rows.append(json.loads(out.strip().splitlines()[-1]))
    per_run = [r["tokens_per_s"] for r in rows]
    return {
        "runs": n,
        "aggregate_tokens_per_s": sum(per_run),
        "per_run_tokens_per_s": per_run,
        "peak_bytes_per_run": [r["peak_bytes"] for r in rows],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--device", default=None, help="cuda when present, else cpu")
    ap.add_argument("--shape", default="baseline")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.child:
        child(args)
        return
    rows = [run_count(args, n) for n in args.counts]
    one = rows[0]["aggregate_tokens_per_s"] if rows[0]["runs"] == 1 else None
    for r in rows:
        r["speedup_vs_one"] = r["aggregate_tokens_per_s"] / one if one else None
        print(
            f"{r['runs']} runs: {r['aggregate_tokens_per_s']:,.0f} tok/s aggregate",
            file=sys.stderr,
        )
    doc = {
        "benchmark": "packing",
        "device": args.device,
        "shape": args.shape,
        "batch": args.batch,
        "seq": args.seq,
        "seconds": args.seconds,
        "results": rows,
    }
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
