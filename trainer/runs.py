"""Run directories: logs/<name>/<run-id>/, where the id is derived from the spec and the seed,
and the names of what a run leaves in its directory (the one source: the trainer writes them,
the runner's RunDirReader reads them, wherever the folder is).

The same command maps to the same directory, so rerunning it resumes (auto-resume is the
default); different experiments or seeds get different directories and never collide.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trainer.config import TrainConfig

METRICS = "metrics.json"  # the final document (docs/metrics.md)
OUTBOX = "outbox.jsonl"  # every metric point for the runner, fsynced before it is sent
ACK = "outbox.ack"  # how much of the outbox the runner acknowledged (bytes)
HEARTBEAT = "heartbeat.json"  # step, tokens, attempt, time: rewritten as the run goes
EXIT = "exit.json"  # how the trainer exited, for a runner that could not watch the process
OUTBOX_PARTS = "outbox"  # a runner that can't be reached: closed part files, one per flush
STOP = "stop.json"  # the runner's word to a trainer it can't answer: why to stop
BEST = "best.pt"  # in checkpoints/: the weights of the best dev evaluation so far


def run_id(cfg: TrainConfig) -> str:
    return f"{cfg.spec_hash()[:10]}-s{cfg.runtime.seed}"


def default_run_dir(cfg: TrainConfig, logs_root: Path = Path("logs")) -> Path:
    return Path(logs_root) / cfg.name / run_id(cfg)


def finished(run_dir: Path) -> dict | None:
    """The metrics.json of a run that already ended as succeeded or killed, else None."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    return doc if doc.get("run", {}).get("status") in ("succeeded", "killed") else None


def write_json(path: Path, doc: dict) -> None:
    """Write a run directory's JSON file atomically (a temporary name, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    os.replace(tmp, path)
