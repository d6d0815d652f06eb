"""The reporter interface: every reporter has the same small interface, and the base class does
nothing, so the training loop never branches on which reporters are on."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Stop:
    """Why to stop. `yield_run`: another attempt owns the run now (this one's token was
    revoked), so checkpoint and leave without a result, like a preemption."""

    reason: str
    yield_run: bool = False


class Reporter:
    """No-op reporter: the interface."""

    def log(self, record: dict) -> None:
        """One event: {"event": "train" | "eval" | ..., "step": int, "tokens": int, ...}."""

    def result(self, metrics: dict) -> None:
        """The final metrics.json document."""

    def stop_requested(self) -> Stop | None:
        """A request to stop (the runner's kill rule, a cancel, a revoked token), or None."""
        return None

    def close(self) -> None:
        pass


class Reporters(Reporter):
    def __init__(self, reporters: list[Reporter]):
        self.reporters = reporters

    def log(self, record: dict) -> None:
        for r in self.reporters:
            r.log(record)

    def result(self, metrics: dict) -> None:
        for r in self.reporters:
            r.result(metrics)

    def stop_requested(self) -> Stop | None:
        for r in self.reporters:
            stop = r.stop_requested()
            if stop is not None:
                return stop
        return None

    def close(self) -> None:
        for r in self.reporters:
            r.close()


def to_points(record: dict) -> list[dict]:
    """metrics.jsonl events -> metric points named like 'train/loss' or 'dev/token_ppl'."""
    kind = record.get("event")
    if kind == "train":
        prefix, keys = "train", ("loss", "lr", "tokens_per_s", "grad_norm", "elapsed_s")
    elif kind == "eval":
        # interval evals (maybe capped) and the whole-split final eval are different series
        prefix = {"valid": "dev"}.get(record["split"], record["split"])
        if record.get("final"):
            prefix = f"final_{prefix}"
        keys = ("loss", "token_ppl", "word_ppl", "bits_per_byte")
    else:
        return []
    out = []
    for k in keys:
        v = record.get(k)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out.append(
                {
                    "name": f"{prefix}/{k}",
                    "step": int(record["step"]),
                    "tokens": int(record["tokens"]),
                    "value": float(v),
                }
            )
    return out
