"""Where a run's numbers go. `reporters_for` is the one place that decides: metrics.jsonl always,
TensorBoard and W&B when asked and available, the runner when the run was launched by one."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from trainer.reporting.base import Reporter, Reporters
from trainer.reporting.http import from_env
from trainer.reporting.local import JsonlReporter, TensorBoardReporter, WandbReporter


def reporters_for(
    run_dir: Path,
    cfg,
    *,
    resume_step: int | None,
    extra: list[Reporter] = (),
    warn=lambda m: print(m, file=sys.stderr),
) -> Reporters:
    out: list[Reporter] = [JsonlReporter(Path(run_dir) / "metrics.jsonl", resume_step)]
    if cfg.log.tensorboard:
        try:
            out.append(TensorBoardReporter(run_dir))
        except ImportError:
            warn(
                "log.tensorboard is on but the tensorboard package is not installed "
                "(pip install tensorboard); continuing without it"
            )
    runner = from_env(run_dir)  # launched by the runner: stream to it as well
    if runner is not None:
        out.append(runner)
    if cfg.log.wandb and os.environ.get("WANDB_API_KEY"):
        with contextlib.suppress(ImportError):  # W&B is never required
            out.append(WandbReporter(run_dir, cfg.log.wandb_project, cfg.name, cfg.model_dump()))
    return Reporters([*out, *extra])
