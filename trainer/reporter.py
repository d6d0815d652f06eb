"""Where a run's numbers go: metrics.jsonl always; TensorBoard and W&B when asked and available.

Every reporter has the same small interface, and the base class does nothing, so the training
loop never branches on which reporters are on. The runner's HTTP reporter plugs in here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path


class Reporter:
    """No-op reporter: the interface."""

    def log(self, record: dict) -> None:
        """One event: {"event": "train" | "eval" | ..., "step": int, "tokens": int, ...}."""

    def result(self, metrics: dict) -> None:
        """The final metrics.json document."""

    def stop_requested(self) -> str | None:
        """A reason to stop (the runner's kill rule), or None to continue."""
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

    def stop_requested(self) -> str | None:
        for r in self.reporters:
            reason = r.stop_requested()
            if reason:
                return reason
        return None

    def close(self) -> None:
        for r in self.reporters:
            r.close()


class JsonlReporter(Reporter):
    """Appends events to metrics.jsonl. On resume, events past the checkpoint are dropped first,
    so the file of a resumed run reads like that of an uninterrupted one."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None and self.path.is_file():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and _step(line) <= resume_step
            ]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, self.path)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def log(self, record: dict) -> None:
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn last line from a crash: drop it


class TensorBoardReporter(Reporter):
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.w = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log(self, record: dict) -> None:
        prefix = record.get("event", "x") + ("/" + record["split"] if "split" in record else "")
        for k, v in record.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step",):
                self.w.add_scalar(f"{prefix}/{k}", v, record.get("step", 0))

    def close(self) -> None:
        self.w.close()


class WandbReporter(Reporter):
    def __init__(self, run_dir: Path, project: str, name: str, config: dict):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=project,
            name=name,
            config=config,
            dir=str(run_dir),
            resume="allow",
            id=Path(run_dir).name,
        )

    def log(self, record: dict) -> None:
        prefix = record.get("event", "x") + ("/" + record["split"] if "split" in record else "")
        data = {
            f"{prefix}/{k}": v
            for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        self.run.log(data, step=record.get("step", 0))

    def result(self, metrics: dict) -> None:
        self.run.summary.update({"status": metrics["run"]["status"]})

    def close(self) -> None:
        self.run.finish()


def optional_reporters(run_dir: Path, cfg, warn=lambda m: print(m, file=sys.stderr)) -> list:
    """TensorBoard when asked (and installed); W&B only when installed and WANDB_API_KEY is set."""
    out: list[Reporter] = []
    if cfg.log.tensorboard:
        try:
            out.append(TensorBoardReporter(run_dir))
        except ImportError:
            warn(
                "log.tensorboard is on but the tensorboard package is not installed "
                "(pip install tensorboard); continuing without it"
            )
    from trainer.http_reporter import from_env

    runner = from_env(run_dir)  # launched by the runner: stream to it as well
    if runner is not None:
        out.append(runner)
    if cfg.log.wandb and os.environ.get("WANDB_API_KEY"):
        with contextlib.suppress(ImportError):  # W&B is never required
            out.append(WandbReporter(run_dir, cfg.log.wandb_project, cfg.name, cfg.model_dump()))
    return out
