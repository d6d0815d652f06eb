"""Learning-rate schedules, after a linear warmup, down to a floor of min_lr_ratio * lr:

- cosine: cosine decay over the whole budget. Stopped early, the LR is still high (at 8M of
  30M tokens it is at 86% of its peak), so an early-stopped model is not annealed.
- wsd (warmup-stable-decay): the peak LR until the last `decay_fraction` of the budget, then a
  linear decay to the floor. It can stop anywhere: when early stopping triggers, a short decay
  (`decay_fraction` of the tokens seen so far) runs from that step before the run ends.
"""

from __future__ import annotations

import math


def lr_at(
    step: int,
    *,
    lr: float,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float,
    schedule: str = "cosine",
    decay_fraction: float = 0.2,
    decay_start: int | None = None,
) -> float:
    """The LR of `step`. For wsd, `decay_start` (a step) moves the decay earlier: the decay then
    spans decay_fraction * decay_start steps (the short decay of an early stop)."""
    floor = lr * min_lr_ratio
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "wsd":
        start, end = wsd_decay(total_steps, decay_fraction, decay_start)
        if step < start:
            return lr
        if step >= end - 1:  # the last step of the decay trains at the floor: annealed
            return floor
        return lr + (floor - lr) * (step - start) / max(1, end - 1 - start)
    if step >= total_steps:
        return floor
    span = max(1, total_steps - warmup_steps)
    progress = (step - warmup_steps) / span
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def wsd_decay(total_steps: int, decay_fraction: float, decay_start: int | None) -> tuple[int, int]:
    """(first, end) step of the decay: the budget's last fraction, or a short one from an
    early stop."""
    if decay_start is None:
        return total_steps - round(decay_fraction * total_steps), total_steps
    return decay_start, min(total_steps, decay_start + max(1, round(decay_fraction * decay_start)))
