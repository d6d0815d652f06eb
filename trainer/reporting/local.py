"""Reporters that write where the run is: metrics.jsonl always; TensorBoard and W&B when asked
and available."""

from __future__ import annotations

import json
import os
from pathlib import Path

from trainer.reporting.base import Reporter


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
