"""Batch-1 latency, peak memory, and the matmul peak that MFU is measured against."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from contextlib import nullcontext

import torch

LENGTHS = (128, 512)  # the sequence lengths latency is reported at


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def latency(
    model,
    device: torch.device,
    seq_lens=LENGTHS,
    repeats: int = 20,
    warmup: int = 3,
    autocast=nullcontext,
) -> dict:
    """Forward latency at batch 1: median and p90 over `repeats` timed runs after warm-up."""
    was_training = model.training
    model.eval()
    out = {}
    g = torch.Generator().manual_seed(0)
    for T in seq_lens:
        if model.cfg.max_seq_len < T:
            continue
        x = torch.randint(0, model.cfg.vocab_size, (1, T), generator=g).to(device)
        times = []
        for i in range(warmup + repeats):
            sync(device)
            t0 = time.perf_counter()
            with autocast():
                model(x)
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        times.sort()
        med = statistics.median(times)
        p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
        out[f"seq{T}"] = {
            "median_ms": 1e3 * med,
            "p90_ms": 1e3 * p90,
            "tokens_per_s": T / med,
            "repeats": repeats,
        }
    model.train(was_training)
    return out


def peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated(device))}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux, bytes on macOS
    return {"kind": "cpu_peak_rss", "bytes": int(rss if sys.platform == "darwin" else rss * 1024)}


def matmul_peak(
    device: torch.device, dtype: torch.dtype = torch.bfloat16, n: int = 2048, seconds: float = 1.0
) -> float:
    """Measured dense matmul FLOP/s on this device and dtype (the MFU denominator)."""
    if device.type == "cpu" and n > 1024:
        n = 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(3):
        a @ b
    sync(device)
    iters, t0 = 0, time.perf_counter()
    while True:
        a @ b
        iters += 1
        if iters % 4 == 0:
            sync(device)
            dt = time.perf_counter() - t0
            if dt >= seconds:
                return 2 * n**3 * iters / dt
