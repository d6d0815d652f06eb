"""metrics.json: the run's final document (schema: docs/metrics.md), assembled from its state,
its plan and its provenance. The final evaluation's sections are added by the caller."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from trainer.run_state import Run

METRICS_SCHEMA_VERSION = 1


def git_sha() -> str | None:
    if os.environ.get("PAX_GIT_SHA"):
        return os.environ["PAX_GIT_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def metrics_document(run: Run, status: str, exit_code: int, reason: str) -> dict:
    cfg, st, device = run.cfg, run.state, run.device
    train_split = (run.tok_manifest.get("splits", {}).get("train") or {}).get("tokens")
    doc = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "run": {
            "name": cfg.name,
            "run_id": run.run_dir.name,
            "run_dir": str(run.run_dir),
            "spec_hash": cfg.spec_hash(),
            "status": status,
            "exit_code": exit_code,
            "exit_reason": reason,
            "attempts": st.attempts,
            "overfit_tokens": run.overfit_tokens,
        },
        "config": cfg.model_dump(),
        "plan": run.plan.to_dict(),
        "provenance": {
            "git_sha": git_sha(),
            "tokenizer_sha256": run.tok_manifest.get("tokenizer_sha256"),
            "data_manifest_sha256": run.tok_manifest.get("data_manifest_sha256"),
            "sample": run.sample,
            "seed": cfg.runtime.seed,
            "device": str(device),
            "device_name": (
                torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else platform.processor() or platform.machine()
            ),
            "dtype": run.dtype,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "compile": cfg.runtime.compile,
            "dataset": dataset_label(run.data_manifest, run.sample),
        },
        "training": {
            "steps": st.step,
            "tokens_seen": st.tokens,
            # passes over the train split: past ~2, a 10M model without dropout can overfit
            "train_split_tokens": train_split,
            "passes": st.tokens / train_split if train_split else None,
            "wall_time_s": st.elapsed,
            "train_loss": st.last_loss,
            "tokens_per_s": st.tokens / st.elapsed if st.elapsed else None,
        },
        "dev_curve": st.evals,
    }
    if run.sample:
        doc["provenance"]["note"] = (
            "SAMPLE data: trained on a stand-in corpus (see the data "
            "manifest); these are not WikiText-2 results"
        )
    return doc


def dataset_label(data_manifest: dict, sample: bool) -> str:
    """What the run trained on, with the sample flag in the name itself (a column that is
    dropped can't make sample results pass as WikiText-2 ones)."""
    name = data_manifest.get("dataset", "WikiText-2")
    if sample:
        return (
            f"{name} SAMPLE (train = the official validation split, dev/test = halves of the "
            "official test split)"
        )
    return name
