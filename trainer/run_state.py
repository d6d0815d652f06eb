"""One run's state: what a checkpoint carries besides the weights (`RunState`, written and
read back through `to_meta` / `from_meta`), and everything a run needs, built once (`Run`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer.config import TrainConfig
from trainer.data import Batches
from trainer.evaluation.profile import sync
from trainer.model import GPT
from trainer.params import Plan
from trainer.reporting.base import Reporters


@dataclass
class RunState:
    """What a checkpoint carries besides the weights, so that a resume continues exactly."""

    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0  # training wall time, summed over attempts
    last_loss: float = float("nan")
    evals: list = field(default_factory=list)
    attempts: int = 0
    # wsd: the step an early stop began its short decay at, and why it stopped (None: running)
    decay_start: int | None = None
    stop_reason: str | None = None

    # the checkpoint metadata's keys for these fields (`step` is the checkpoint's own)
    META = ("tokens", "elapsed", "last_loss", "evals", "attempts", "decay_start", "stop_reason")

    def to_meta(self) -> dict:
        return {k: getattr(self, k) for k in self.META}

    @classmethod
    def from_meta(cls, meta: dict) -> RunState:
        """The state a checkpoint's metadata describes (older checkpoints lack some keys)."""
        found = {k: meta[k] for k in cls.META if k in meta}
        found.setdefault("last_loss", math.nan)
        return cls(step=meta["step"], **found)


@dataclass
class Run:
    """Everything one run needs, built once by `set_up`."""

    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    autocast: object
    scaler: object
    dtype: str
    plan: Plan
    tok_dir: Path
    tok_manifest: dict
    data_manifest: dict
    batches: Batches
    model: GPT
    fwd: object  # the training step's forward: the model, or its compiled step
    optimizer: torch.optim.Optimizer
    report: Reporters
    state: RunState
    resumed: bool
    overfit_tokens: int = 0
    # wall seconds of this attempt by phase (metrics.json "timings"): where a run's time goes
    timings: dict = field(default_factory=dict)
    last_saved_step: int = -1
    # this attempt's first step, and the frames compiled by its warm-up (recompile counting)
    first_step: int = 0
    frames_at_warmup: int | None = None
    last_ckpt_time: float = field(default_factory=time.time)

    @property
    def sample(self) -> bool:
        return bool(self.tok_manifest.get("sample"))

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"


class timed:
    """Add the wall time of a block to run.timings[key] (device work included: it syncs)."""

    def __init__(self, run: Run, key: str):
        self.run, self.key = run, key

    def __enter__(self):
        sync(self.run.device)
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        sync(self.run.device)
        t = self.run.timings
        t[self.key] = t.get(self.key, 0.0) + time.perf_counter() - self.t0
