"""Learning-rate schedule: 1) linear warmup 2) cosine decay 3) a floor at min_lr_ratio * lr."""

from __future__ import annotations

import math


def lr_at(
    step: int, *, lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float
) -> float:
    floor = lr * min_lr_ratio
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return floor
    span = max(1, total_steps - warmup_steps)
    progress = (step - warmup_steps) / span
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
