"""Inference at batch 1, named for what each number is: prefill latency (a full forward over a
prompt of 128/512 tokens), decode latency per token with a KV cache at those contexts, and the
inference peak memory; plus the matmul peak that MFU is measured against.

Latency is only meaningful on an otherwise idle device: `Window` says whether other processes
used the CPU while it was measured, and records when, so that the ledger can count the runs
that shared a GPU then (the demo's baseline read 17.5 ms against 5-8 ms for cells of its size
because two trainers shared 2 cores).
"""

from __future__ import annotations

import os
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


@torch.no_grad()
def decode_latency(
    model,
    device: torch.device,
    contexts=LENGTHS,
    steps: int = 16,
    repeats: int = 3,
    autocast=nullcontext,
) -> dict:
    """Per-token decode latency with a KV cache at each context length: a prompt of ctx - steps
    tokens, then `steps` one-token steps that bring the context to ctx; the median over
    `repeats` of their mean time (prefill not timed)."""
    from trainer.model import KVCache

    was_training = model.training
    model.eval()
    out = {}
    g = torch.Generator().manual_seed(0)
    dtype = next(model.parameters()).dtype
    for ctx in contexts:
        if model.cfg.max_seq_len < ctx or ctx <= steps:
            continue
        prompt = torch.randint(0, model.cfg.vocab_size, (1, ctx - steps), generator=g).to(device)
        per_token = []
        for _ in range(repeats + 1):  # the first is a warm-up
            cache = KVCache(model.cfg, 1, ctx, dtype, device)
            with autocast():
                logits = model.next_logits(prompt, cache)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                with autocast():
                    logits = model.next_logits(logits.argmax(-1, keepdim=True), cache)
            sync(device)
            per_token.append((time.perf_counter() - t0) / steps)
        med = statistics.median(per_token[1:])
        out[f"ctx{ctx}"] = {"ms_per_token": 1e3 * med, "tokens_per_s": 1 / med, "steps": steps}
    model.train(was_training)
    return out


@torch.no_grad()
def inference_memory(model, device: torch.device, context: int = 512, autocast=nullcontext):
    """Peak memory of batch-1 inference at `context` tokens: on CUDA the allocator's peak
    after a reset (weights included); on CPU, which has no allocator statistics, the bytes of
    the weights, the KV cache, and the largest activation any module produced (forward hooks)
    plus the logits row: each measured from real tensors, not process RSS (which counts the
    training run, the Python heap and libraries)."""
    from trainer.model import KVCache

    context = min(context, model.cfg.max_seq_len - 1)
    x = torch.randint(0, model.cfg.vocab_size, (1, context), device=device)
    dtype = next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        cache = KVCache(model.cfg, 1, context + 1, dtype, device)
        with autocast():
            logits = model.next_logits(x, cache)
            model.next_logits(logits.argmax(-1, keepdim=True), cache)
        sync(device)
        model.train(was_training)
        return {
            "kind": "cuda_inference_peak",
            "context": context,
            "bytes": int(torch.cuda.max_memory_allocated(device)),
        }
    largest = [0]

    def hook(_m, _inp, out):
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out.nbytes)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        cache = KVCache(model.cfg, 1, context + 1, dtype, device)
        with autocast():
            logits = model.next_logits(x, cache)
            model.next_logits(logits.argmax(-1, keepdim=True), cache)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    weights = sum(p.nbytes for p in model.parameters())
    parts = {"weights": weights, "kv_cache": cache.nbytes(), "activation": largest[0]}
    parts["logits"] = logits.nbytes
    return {"kind": "cpu_tensor_bytes", "context": context, "bytes": sum(parts.values()), **parts}


def _cpu_busy_s() -> float | None:
    """Seconds of CPU time the whole machine spent busy so far (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Window:
    """What else ran while latency was measured. Its wall-clock `start` and `end` go into the
    result, where the ledger counts the runs that shared the device then (GPUs included); on
    CPU it also measures the other processes' CPU use over exactly this window (the 1-minute
    load average it replaces looked back past the window)."""

    def __enter__(self) -> Window:
        self.start, self.t0 = time.time(), time.perf_counter()
        self.busy0, self.own0 = _cpu_busy_s(), sum(os.times()[:2])
        return self

    def __exit__(self, *exc) -> None:
        self.end, wall = time.time(), max(1e-9, time.perf_counter() - self.t0)
        busy1, own1 = _cpu_busy_s(), sum(os.times()[:2])
        self.other_cores = (
            max(0.0, (busy1 - self.busy0) - (own1 - self.own0)) / wall
            if busy1 is not None and self.busy0 is not None
            else None
        )

    def contended(self, device: torch.device) -> bool | None:
        """On CPU: other processes used over half a core on average during the window; None
        where that cannot be read. GPUs: judged by the ledger from the runs sharing it."""
        if device.type != "cpu" or self.other_cores is None:
            return None
        return self.other_cores > 0.5

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "other_cpu_cores": self.other_cores}


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
