"""Perplexity over a whole split.

Windowing (documented in README, 'Evaluation'): the split's token stream is prefixed with one BOS
and cut into consecutive, non-overlapping windows of `seq_len` predictions. Every token of the
split (line breaks included) is predicted exactly once, from the tokens before it in its window.

- token PPL = exp(total NLL / tokens)
- word PPL  = exp(total NLL / word-level tokens) with the WikiText convention: words plus one
  end-of-line per line (valid 217,646 and test 245,569 on the official data)
- bits per byte = total NLL / (ln 2 x UTF-8 bytes of the split file)
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import torch

from trainer.prep.tokenizer import BOS_ID


@torch.no_grad()
def split_nll(
    model,
    tokens: np.ndarray,
    seq_len: int,
    device: torch.device,
    *,
    batch_size: int = 0,
    max_tokens: int = 0,
    autocast=nullcontext,
) -> tuple[float, int]:
    """(total NLL in nats, tokens scored) over `tokens` (or its first `max_tokens`).

    Windows go `batch_size` at a time (0: 64 on CUDA, 8 on CPU, where the numbers were
    established) and the sum stays on the device in float64 until the end: one host sync per
    split instead of one per batch, and the same additions as a Python float would make."""
    batch_size = batch_size or (64 if device.type == "cuda" else 8)
    was_training = model.training
    model.eval()
    stream = np.asarray(tokens[:max_tokens] if max_tokens else tokens, dtype=np.int64)
    stream = np.concatenate([[BOS_ID], stream])
    n_pred = len(stream) - 1
    n_full = n_pred // seq_len
    total, scored = torch.zeros((), dtype=torch.float64, device=device), 0

    def score(starts: list[int], length: int) -> None:
        nonlocal total, scored
        x = torch.from_numpy(np.stack([stream[s : s + length] for s in starts])).to(device)
        y = torch.from_numpy(np.stack([stream[s + 1 : s + length + 1] for s in starts])).to(device)
        with autocast():
            _, loss = model(x, y, reduction="sum")
        total += loss.double()
        scored += y.numel()

    for b in range(0, n_full, batch_size):
        score([i * seq_len for i in range(b, min(b + batch_size, n_full))], seq_len)
    if n_pred > n_full * seq_len:  # the short tail
        score([n_full * seq_len], n_pred - n_full * seq_len)
    model.train(was_training)
    return float(total), scored


@torch.no_grad()
def strided_nll(
    model,
    tokens: np.ndarray,
    seq_len: int,
    stride: int,
    device: torch.device,
    *,
    batch_size: int = 0,
    autocast=nullcontext,
) -> tuple[float, int]:
    """(total NLL, tokens scored) with overlapping windows: a window of `seq_len` starts every
    `stride` tokens and scores only its last `stride` predictions, so every token is still
    scored exactly once, but (past the first window) with at least seq_len - stride tokens of
    context instead of a context that resets every seq_len."""
    batch_size = batch_size or (64 if device.type == "cuda" else 8)
    was_training = model.training
    model.eval()
    stream = np.concatenate([[BOS_ID], np.asarray(tokens, dtype=np.int64)])
    n_pred = len(stream) - 1
    jobs: dict[tuple[int, int], list[int]] = {}  # (length, first scored offset) -> starts
    done = min(seq_len, n_pred)
    jobs.setdefault((done, 0), []).append(0)
    while done < n_pred:
        end = min(done + stride, n_pred)
        start = max(0, end - seq_len)
        jobs.setdefault((end - start, done - start), []).append(start)
        done = end
    total, scored = torch.zeros((), dtype=torch.float64, device=device), 0
    for (length, off), starts in jobs.items():
        for b in range(0, len(starts), batch_size):
            group = starts[b : b + batch_size]
            x = torch.from_numpy(np.stack([stream[s : s + length] for s in group])).to(device)
            y = torch.from_numpy(np.stack([stream[s + 1 : s + length + 1] for s in group]))
            y = y[:, off:].to(device)
            with autocast():
                h = model.hidden(x)[:, off:]
                total += model.head_loss(h, y, reduction="sum").double()
            scored += y.numel()
    model.train(was_training)
    return float(total), scored


def perplexities(total_nll: float, tokens: int, *, word_level_tokens: int, n_bytes: int) -> dict:
    return {
        "loss": total_nll / tokens,
        "token_ppl": math.exp(total_nll / tokens),
        "word_ppl": math.exp(total_nll / word_level_tokens),
        "bits_per_byte": total_nll / (math.log(2) * n_bytes),
        "scored_tokens": tokens,
        "word_level_tokens": word_level_tokens,
        "bytes": n_bytes,
    }


def evaluate_split(
    model,
    tokens: np.ndarray,
    split_stats: dict,
    seq_len: int,
    device: torch.device,
    *,
    max_tokens: int = 0,
    autocast=nullcontext,
    stride: int = 0,
) -> dict:
    """Perplexities of one split; a capped eval scales words and bytes by the share scored.
    With `stride` (whole splits only) the numbers are the strided ones, and the
    non-overlapping ones are kept under `nonoverlap`."""
    total, scored = split_nll(
        model, tokens, seq_len, device, max_tokens=max_tokens, autocast=autocast
    )
    share = scored / split_stats["tokens"]
    words = max(1, round(split_stats["word_level_tokens"] * share))
    n_bytes = max(1, round(split_stats["bytes"] * share))
    out = perplexities(total, scored, word_level_tokens=words, n_bytes=n_bytes)
    out["partial"] = scored < split_stats["tokens"]
    out["windowing"] = f"non-overlapping windows of {seq_len}"
    if stride and not max_tokens and stride < seq_len:
        s_total, s_scored = strided_nll(model, tokens, seq_len, stride, device, autocast=autocast)
        nonoverlap = {k: out[k] for k in ("loss", "token_ppl", "word_ppl", "bits_per_byte")}
        out.update(perplexities(s_total, s_scored, word_level_tokens=words, n_bytes=n_bytes))
        out["windowing"] = f"windows of {seq_len} every {stride} tokens (strided)"
        out["nonoverlap"] = nonoverlap
    return out
