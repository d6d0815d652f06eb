"""Where and how a run computes: device, precision, seeds and threads, the optimizer.

Shared by training, evaluation of a run directory and the LR finder, so each of them picks the
device and autocast dtype the same way.
"""

from __future__ import annotations

import os
import random
from contextlib import nullcontext
from functools import partial

import numpy as np
import torch

from trainer.config import ConfigError, TrainConfig


def resolve_device(spec: str) -> torch.device:
    if spec == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "runtime.device: cuda was asked for but no CUDA device is visible; use auto or cpu"
        )
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def precision(device: torch.device, dtype: str):
    """(autocast factory, GradScaler or None, the dtype actually used)."""
    if dtype == "fp32":
        return nullcontext, None, "fp32"
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        dtype = "fp16"  # pre-Ampere GPUs: fp16 with loss scaling instead
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if dtype == "fp16" else None
    return partial(torch.autocast, device.type, dtype=torch_dtype), scaler, dtype


def is_deterministic(setting: bool | None, device: torch.device) -> bool:
    """runtime.deterministic, or its default for the device: on for CPU, off for CUDA."""
    return device.type != "cuda" if setting is None else setting


def tune_backend(device: torch.device) -> None:
    """TF32 for any fp32 matmul or convolution left on a CUDA device (bf16 autocast covers the
    model's matmuls; this is for whatever runs outside it)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def seed_everything(seed: int, deterministic: bool, threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def prepare(cfg: TrainConfig) -> torch.device:
    """The device of a run, seeded and tuned the same way for training, evaluation and the LR
    finder."""
    device = resolve_device(cfg.runtime.device)
    seed_everything(
        cfg.runtime.seed, is_deterministic(cfg.runtime.deterministic, device), cfg.runtime.threads
    )
    tune_backend(device)
    return device


def place_model(model, cfg: TrainConfig, device: torch.device):
    """Move the model to its device and give it that device's LM-head loss plan."""
    from trainer.model import LossPlan

    model = model.to(device)
    model.loss_plan = LossPlan.for_device(
        device, model.cfg.vocab_size, chunk=cfg.runtime.loss_chunk_rows
    )
    return model


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
    # Matrices (embedding included, as in GPT-2/nanoGPT) decay; RMSNorm gains do not.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kw = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(
        groups, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2), **kw
    )


WARMUP_STEPS = 3  # steps after which the compiled step must not compile again


def compiled_frames() -> int:
    """Frames torch._dynamo has compiled in this process (0 when nothing was compiled)."""
    import sys

    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters

    return int(counters["frames"]["ok"])


def compile_counts(frames_at_warmup: int | None, mode: str) -> dict:
    """metrics.json "compile": frames compiled in this attempt, and how many of them came after
    the first WARMUP_STEPS steps (the target is 0: evaluation runs eager, the step's shapes are
    static). Counted through the final evaluation."""
    total = compiled_frames()
    return {
        "mode": mode,
        "frames_compiled": total,
        "warmup_steps": WARMUP_STEPS,
        "recompiles_after_warmup": total - frames_at_warmup if frames_at_warmup is not None else 0,
    }
