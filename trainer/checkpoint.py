"""Atomic checkpoints with JSON metadata beside the weights; keep_latest_k; resume from latest.

Layout: <run_dir>/checkpoints/step_00001234.pt and step_00001234.json. The .pt is written to a
temporary name and renamed, then the .json likewise: a checkpoint counts only once its .json
exists, so a crash mid-write never leaves a checkpoint that looks complete but is not.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from trainer.config import ConfigError
from trainer.runs import BEST  # the weights of the best dev evaluation so far


def rng_state() -> dict:
    """Every RNG's state as tensors and plain Python values, so that the checkpoint loads with
    `weights_only=True` (no arbitrary unpickling of a file that may come from elsewhere)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_replace(tmp: Path, dst: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)


def save(ckpt_dir: Path, step: int, state: dict, meta: dict, keep_latest_k: int) -> Path:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stem = ckpt_dir / f"step_{step:08d}"
    tmp = stem.with_name(stem.name + f".pt.tmp{os.getpid()}")
    torch.save({**state, "rng": rng_state()}, tmp)
    _fsync_replace(tmp, stem.with_suffix(".pt"))
    tmp_meta = stem.with_name(stem.name + f".json.tmp{os.getpid()}")
    tmp_meta.write_text(json.dumps({**meta, "step": step, "weights": stem.name + ".pt"}, indent=2))
    _fsync_replace(tmp_meta, stem.with_suffix(".json"))
    prune(ckpt_dir, keep_latest_k)
    return stem.with_suffix(".pt")


def complete(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints (metadata present and weights present), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    out = [p for p in sorted(ckpt_dir.glob("step_*.json")) if p.with_suffix(".pt").is_file()]
    return out


def prune(ckpt_dir: Path, keep_latest_k: int) -> None:
    for meta in complete(ckpt_dir)[:-keep_latest_k]:
        meta.unlink(missing_ok=True)  # metadata first: the checkpoint stops counting at once
        meta.with_suffix(".pt").unlink(missing_ok=True)
    for stale in ckpt_dir.glob("*.tmp*"):  # leftovers of a crash mid-write
        stale.unlink(missing_ok=True)


def latest(ckpt_dir: Path) -> tuple[dict, dict] | None:
    """(state, meta) of the newest complete checkpoint, or None."""
    done = complete(ckpt_dir)
    if not done:
        return None
    meta = json.loads(done[-1].read_text())
    path = done[-1].with_suffix(".pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConfigError(
            f"{path} holds more than tensors and plain values, so it is not loaded (a checkpoint "
            f"of an older pax, or not a pax checkpoint): {str(e).splitlines()[0]}. Start the run "
            "again with checkpoint.resume=false or another --run-dir"
        ) from None
    return state, meta


def save_best(ckpt_dir: Path, model_state: dict, meta: dict) -> Path:
    """Keep the model of the best dev evaluation (never pruned: it is not a step_* file)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / f"{BEST}.tmp{os.getpid()}"
    torch.save({"model": model_state, "meta": meta}, tmp)
    _fsync_replace(tmp, ckpt_dir / BEST)
    return ckpt_dir / BEST


def load_best(ckpt_dir: Path) -> tuple[dict, dict] | None:
    """(model state, meta) of the best dev evaluation, or None."""
    path = ckpt_dir / BEST
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return saved["model"], saved["meta"]
