"""LR range test (Smith 2017): raise the LR exponentially each step, watch the loss.

Writes lr_find.csv and lr_find.png to the run directory and suggests the LR at the steepest
descent of the smoothed loss (a common, conservative pick), never above a tenth of the LR at
the loss minimum.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from trainer.config import TrainConfig
from trainer.data import Batches
from trainer.model import GPT
from trainer.prep.tokenizer import load_tokens


def lr_find(
    cfg: TrainConfig,
    run_dir: Path,
    *,
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    steps: int = 100,
    smoothing: float = 0.9,
    diverge: float = 4.0,
) -> dict:
    from trainer.runtime import build_optimizer, place_model, precision, prepare

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = prepare(cfg)
    autocast, scaler, _ = precision(device, cfg.runtime.dtype)
    model = GPT.from_plan(cfg.plan(), max_seq_len=cfg.data.seq_len, dropout=cfg.model.dropout)
    model = place_model(model, cfg, device)
    opt = build_optimizer(model, cfg, device)
    batches = Batches(
        load_tokens(cfg.tokenized_path(), "train"),
        cfg.data.seq_len,
        cfg.data.batch_size,
        cfg.runtime.seed,
    )
    gamma = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    rows, avg, best = [], 0.0, math.inf
    for step in range(steps):
        lr = start_lr * gamma**step
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = (t.to(device) for t in batches.get(step))
        with autocast():
            _, loss = model(x, y)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        value = float(loss)
        avg = smoothing * avg + (1 - smoothing) * value
        smooth = avg / (1 - smoothing ** (step + 1))  # bias-corrected EMA
        rows.append({"step": step, "lr": lr, "loss": value, "smoothed_loss": smooth})
        best = min(best, smooth)
        if not math.isfinite(value) or smooth > diverge * best:
            break
    suggestion = suggest(rows)
    with open(run_dir / "lr_find.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, suggestion, run_dir / "lr_find.png")
    return {
        "suggested_lr": suggestion,
        "steps": len(rows),
        "csv": str(run_dir / "lr_find.csv"),
        "png": str(run_dir / "lr_find.png"),
    }


def suggest(rows: list[dict]) -> float:
    lrs = np.array([r["lr"] for r in rows])
    losses = np.array([r["smoothed_loss"] for r in rows])
    if len(rows) < 5:
        return float(lrs[int(np.argmin(losses))] / 10)
    grads = np.gradient(losses, np.log(lrs))
    i_min = int(np.argmin(losses))
    # steepest descent before the minimum (skip the noisy first few points)
    lo = min(3, max(0, i_min - 1))
    i_steep = lo + int(np.argmin(grads[lo : i_min + 1])) if i_min > lo else i_min
    return float(min(lrs[i_steep], lrs[i_min] / 10) if i_min > 0 else lrs[0])


def plot(rows: list[dict], suggestion: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["lr"] for r in rows], [r["loss"] for r in rows], alpha=0.3, label="loss")
    ax.plot([r["lr"] for r in rows], [r["smoothed_loss"] for r in rows], label="smoothed")
    ax.axvline(suggestion, color="C3", ls="--", label=f"suggested {suggestion:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="train loss", title="LR range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
