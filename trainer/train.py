"""The training harness: one run, one directory, resumable bit for bit.

Run directory: config.json, plan.json, checkpoints/, metrics.jsonl (events as they happen),
metrics.json (the final document, schema in docs/metrics.md), train.log when launched by the
runner, lr_find.{csv,png} for LR range tests.

Exit codes (also in README):
    0   done: trained and evaluated (or already done)
    1   crashed: an unexpected error; the latest checkpoint is intact, rerun to resume
    2   bad config or input: nothing was trained; the message names the field and the fix
    3   killed by rule: the runner's kill rule asked to stop; checkpoint and metrics.json written
    75  preempted: SIGTERM/SIGINT; checkpoint written, rerun the same command to resume
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from trainer import checkpoint as ckpt
from trainer.config import ConfigError, TrainConfig
from trainer.data import Batches
from trainer.evaluate import evaluate_split
from trainer.model import GPT
from trainer.reporter import JsonlReporter, Reporter, Reporters, optional_reporters
from trainer.schedule import lr_at
from trainer.tokenizer import load_tokens

EXIT_OK, EXIT_CRASH, EXIT_BAD_CONFIG, EXIT_KILLED, EXIT_PREEMPTED = 0, 1, 2, 3, 75
METRICS_SCHEMA_VERSION = 1
PROFILE_LENGTHS = (128, 512)


class RunLocked(RuntimeError):
    pass


# ---------------------------------------------------------------- runtime set-up


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


class RunLock:
    """One process per run directory (an flock, released by the kernel even on SIGKILL)."""

    def __init__(self, run_dir: Path, wait_s: float = 0.0):
        self.path = Path(run_dir) / ".lock"
        self.wait_s = wait_s  # a relaunch may briefly overlap the previous attempt's exit

    def __enter__(self):
        self.f = open(self.path, "a+")  # noqa: SIM115 - held for the whole run
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
            self.f.seek(0)
            holder = self.f.read().strip() or "another process"
            self.f.close()
            raise RunLocked(
                f"{self.path.parent} is being trained by {holder}; wait for it, or "
                "give this run another --run-dir"
            ) from None
        self.f.seek(0)
        self.f.truncate()
        self.f.write(f"pid {os.getpid()}")
        self.f.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


class StopSignal:
    """SIGTERM (spot preemption) / SIGINT: finish the step, checkpoint, exit 75."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------- progress


class Progress:
    """A rich progress bar on a terminal; plain periodic lines otherwise (logs, CI)."""

    def __init__(self, total_tokens: int, done_tokens: int, enabled: bool = True):
        self.total = total_tokens
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RP

            self.bar = RP(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task(
                "train", total=total_tokens, completed=done_tokens, info=""
            )

    def update(self, tokens: int, loss: float, tps: float) -> None:
        eta = (self.total - tokens) / tps if tps > 0 else float("inf")
        if self.bar is not None:
            self.bar.update(self.task, completed=tokens, info=f"loss {loss:.3f}  {tps:,.0f} tok/s")
        else:
            print(
                f"tokens {tokens:,}/{self.total:,} loss {loss:.4f} {tps:,.0f} tok/s "
                f"eta {eta:,.0f}s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# ---------------------------------------------------------------- the run


@dataclass
class RunState:
    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0  # training wall time, summed over attempts
    last_loss: float = float("nan")
    evals: list = field(default_factory=list)
    attempts: int = 0


def _load_data(cfg: TrainConfig) -> tuple[Path, dict, dict]:
    tok_dir = cfg.tokenized_path()
    manifest_path = tok_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(
            f"data.tokenized_dir: {manifest_path} is missing; run "
            f"`scripts/preprocess_lm.py --input data/wikitext-2 --vocab_size "
            f"{cfg.model.vocab_size} --output {cfg.data.tokenized_dir}` first"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest["vocab_size"] != cfg.model.vocab_size:
        raise ConfigError(
            f"model.vocab_size={cfg.model.vocab_size} but {tok_dir} holds a "
            f"{manifest['vocab_size']}-token vocabulary"
        )
    data_manifest_path = Path(manifest.get("data_dir", "")) / "DATASET_MANIFEST.json"
    data_manifest = (
        json.loads(data_manifest_path.read_text()) if data_manifest_path.is_file() else {}
    )
    return tok_dir, manifest, data_manifest


def write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def train(
    cfg: TrainConfig,
    run_dir: Path,
    *,
    reporters: list[Reporter] | None = None,
    overfit_tokens: int = 0,
    progress: bool = True,
    lock_wait_s: float = 0.0,
) -> tuple[int, dict]:
    """Train and evaluate one run in `run_dir`; return (exit code, metrics document)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir, lock_wait_s), StopSignal() as stop:
        return _train(cfg, run_dir, stop, reporters or [], overfit_tokens, progress)


def _train(
    cfg: TrainConfig,
    run_dir: Path,
    stop: StopSignal,
    extra: list[Reporter],
    overfit_tokens: int,
    show_progress: bool,
) -> tuple[int, dict]:
    t_start = time.time()
    device = resolve_device(cfg.runtime.device)
    seed_everything(cfg.runtime.seed, cfg.runtime.deterministic, cfg.runtime.threads)
    autocast, scaler, used_dtype = precision(device, cfg.runtime.dtype)
    plan = cfg.plan()
    tok_dir, tok_manifest, data_manifest = _load_data(cfg)
    sample = bool(tok_manifest.get("sample"))

    train_tokens = load_tokens(tok_dir, "train")
    if overfit_tokens:
        train_tokens = np.asarray(train_tokens[: overfit_tokens + 1])
    batches = Batches(train_tokens, cfg.data.seq_len, cfg.data.batch_size, cfg.runtime.seed)

    model = GPT.from_plan(plan, max_seq_len=max(cfg.data.seq_len, *PROFILE_LENGTHS)).to(device)
    optimizer = build_optimizer(model, cfg, device)
    fwd = model.compiled() if cfg.runtime.compile else model

    (run_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
    (run_dir / "plan.json").write_text(plan.to_json())
    ckpt_dir = run_dir / "checkpoints"
    state = RunState()
    resumed = ckpt.latest(ckpt_dir) if cfg.checkpoint.resume else None
    if resumed is not None:
        saved, meta = resumed
        if meta.get("spec_hash") != cfg.spec_hash():
            raise ConfigError(
                f"{run_dir} holds checkpoints of another config "
                f"(spec {meta.get('spec_hash')}, this one {cfg.spec_hash()}); use "
                "another --run-dir, or set checkpoint.resume=false to start over"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        ckpt.set_rng_state(saved["rng"])
        state = RunState(
            step=meta["step"],
            tokens=meta["tokens"],
            elapsed=meta["elapsed"],
            last_loss=meta.get("last_loss", float("nan")),
            evals=meta.get("evals", []),
            attempts=meta.get("attempts", 0),
        )
    state.attempts += 1

    jsonl = JsonlReporter(
        run_dir / "metrics.jsonl", resume_step=state.step if resumed is not None else None
    )
    report = Reporters([jsonl, *optional_reporters(run_dir, cfg), *extra])
    tps_step = cfg.tokens_per_step
    total_steps = cfg.total_steps
    warmup_steps = math.ceil(cfg.optim.warmup_tokens / tps_step)
    splits = tok_manifest["splits"]
    eval_every = cfg.eval.every_tokens if not overfit_tokens else 0

    def evaluate(split: str, max_tokens: int = 0, final: bool = False) -> dict:
        res = evaluate_split(
            fwd,
            load_tokens(tok_dir, split),
            splits[split],
            cfg.data.seq_len,
            device,
            max_tokens=max_tokens,
            autocast=autocast,
        )
        rec = {
            "event": "eval",
            "split": split,
            "final": final,
            "step": state.step,
            "tokens": state.tokens,
            **res,
        }
        report.log(rec)
        return rec

    last_saved = {"step": state.step if resumed is not None else -1}

    def save_checkpoint() -> None:
        meta = {
            "spec_hash": cfg.spec_hash(),
            "tokens": state.tokens,
            "elapsed": state.elapsed,
            "last_loss": state.last_loss,
            "evals": state.evals,
            "attempts": state.attempts,
            "data_position": batches.position(state.step),
            "config": cfg.model_dump(),
            "time": time.time(),
        }
        st = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        }
        ckpt.save(ckpt_dir, state.step, st, meta, cfg.checkpoint.keep_latest_k)
        last_saved["step"] = state.step
        report.log({"event": "checkpoint", "step": state.step, "tokens": state.tokens})

    report.log(
        {
            "event": "start",
            "step": state.step,
            "tokens": state.tokens,
            "attempt": state.attempts,
            "resumed": resumed is not None,
            "device": str(device),
            "dtype": used_dtype,
        }
    )
    bar = Progress(total_steps * tps_step, state.tokens, enabled=show_progress)
    status, exit_code, reason = "succeeded", EXIT_OK, "completed the token budget"
    last_ckpt_time = time.time()
    window_t0, window_tokens = time.perf_counter(), 0
    model.train()
    try:
        while state.step < total_steps:
            t_step = time.perf_counter()
            lr = lr_at(
                state.step,
                lr=cfg.optim.lr,
                warmup_steps=warmup_steps,
                total_steps=total_steps,
                min_lr_ratio=cfg.optim.min_lr_ratio,
            )
            for g in optimizer.param_groups:
                g["lr"] = lr
            x, y = batches.get(state.step)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast():
                _, loss = fwd(x, y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            gnorm = (
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                if cfg.optim.grad_clip > 0
                else None
            )
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.tokens += tps_step
            state.elapsed += time.perf_counter() - t_step
            window_tokens += tps_step

            if state.step % cfg.log.every_steps == 0 or state.step == total_steps:
                state.last_loss = float(loss.detach())
                if not math.isfinite(state.last_loss):
                    raise FloatingPointError(
                        f"train loss is {state.last_loss} at step "
                        f"{state.step}; lower optim.lr or raise "
                        "optim.warmup_tokens"
                    )
                tps = window_tokens / max(1e-9, time.perf_counter() - window_t0)
                window_t0, window_tokens = time.perf_counter(), 0
                report.log(
                    {
                        "event": "train",
                        "step": state.step,
                        "tokens": state.tokens,
                        "loss": state.last_loss,
                        "lr": lr,
                        "tokens_per_s": tps,
                        "grad_norm": float(gnorm) if gnorm is not None else None,
                    }
                )
                bar.update(state.tokens, state.last_loss, tps)
            if eval_every and state.tokens // eval_every > (state.tokens - tps_step) // eval_every:
                rec = evaluate("valid", cfg.eval.max_tokens)
                state.evals.append(
                    {
                        k: rec[k]
                        for k in (
                            "step",
                            "tokens",
                            "token_ppl",
                            "word_ppl",
                            "bits_per_byte",
                            "loss",
                        )
                    }
                )
                patience = cfg.eval.early_stop_patience
                if patience and len(state.evals) > patience:
                    best = min(e["token_ppl"] for e in state.evals[:-patience])
                    if min(e["token_ppl"] for e in state.evals[-patience:]) >= best:
                        reason = (
                            f"early stop: no better dev PPL in {patience} evals (best {best:.3f})"
                        )
                        save_checkpoint()
                        break
            due_steps = cfg.checkpoint.every_steps and state.step % cfg.checkpoint.every_steps == 0
            due_time = (
                cfg.checkpoint.every_minutes
                and time.time() - last_ckpt_time >= 60 * cfg.checkpoint.every_minutes
            )
            if due_steps or due_time:
                save_checkpoint()
                last_ckpt_time = time.time()
            if stop.signum is not None:
                status, exit_code = "preempted", EXIT_PREEMPTED
                reason = f"received {signal.Signals(stop.signum).name}; checkpoint written"
                break
            kill = report.stop_requested()
            if kill:
                status, exit_code, reason = "killed", EXIT_KILLED, kill
                break
        if state.step != last_saved["step"]:  # the final (or interrupted) state, once
            save_checkpoint()
    finally:
        bar.close()

    metrics = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "run": {
            "name": cfg.name,
            "run_id": run_dir.name,
            "run_dir": str(run_dir),
            "spec_hash": cfg.spec_hash(),
            "status": status,
            "exit_code": exit_code,
            "exit_reason": reason,
            "attempts": state.attempts,
            "overfit_tokens": overfit_tokens,
        },
        "config": cfg.model_dump(),
        "plan": plan.to_dict(),
        "provenance": {
            "git_sha": git_sha(),
            "tokenizer_sha256": tok_manifest.get("tokenizer_sha256"),
            "data_manifest_sha256": tok_manifest.get("data_manifest_sha256"),
            "sample": sample,
            "seed": cfg.runtime.seed,
            "device": str(device),
            "device_name": (
                torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else platform.processor() or platform.machine()
            ),
            "dtype": used_dtype,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "compile": cfg.runtime.compile,
            "dataset": data_manifest.get("dataset", "WikiText-2"),
        },
        "training": {
            "steps": state.step,
            "tokens_seen": state.tokens,
            "wall_time_s": state.elapsed,
            "train_loss": state.last_loss,
            "tokens_per_s": state.tokens / state.elapsed if state.elapsed else None,
        },
        "dev_curve": state.evals,
    }
    if sample:
        metrics["provenance"]["note"] = (
            "SAMPLE data: trained on a stand-in corpus (see the data "
            "manifest); these are not WikiText-2 results"
        )
    if status in ("succeeded", "killed") and not overfit_tokens:
        metrics.update(
            final_evaluation(cfg, fwd, model, tok_dir, device, autocast, evaluate, state)
        )
    metrics["run"]["finished_at"] = time.time()
    metrics["run"]["total_wall_time_s"] = time.time() - t_start
    if status != "preempted":
        write_json(run_dir / "metrics.json", metrics)
        report.result(metrics)
    report.log(
        {
            "event": "end",
            "step": state.step,
            "tokens": state.tokens,
            "status": status,
            "exit_code": exit_code,
            "reason": reason,
        }
    )
    report.close()
    return exit_code, metrics


def final_evaluation(
    cfg: TrainConfig, fwd, model: GPT, tok_dir: Path, device, autocast, evaluate, state: RunState
) -> dict:
    """Whole-split dev/test perplexity, SmallBench, latency, memory, throughput and MFU."""
    from trainer import profile
    from trainer.tokenizer import load_tokenizer

    out: dict = {"dev": _ppl(evaluate("valid", final=True))}
    out["test"] = _ppl(evaluate("test", final=True)) if cfg.eval.test else None
    out["smallbench"] = None
    if cfg.eval.smallbench:
        from trainer import smallbench

        suite_dir = Path(cfg.eval.smallbench_dir)
        try:
            suite = smallbench.load_suite(suite_dir)
        except FileNotFoundError as e:
            out["smallbench"] = {"skipped": str(e)}
        else:
            out["smallbench"] = smallbench.score(model, load_tokenizer(tok_dir), suite, device)
            out["smallbench"]["suite_manifest"] = json.loads(
                (suite_dir / smallbench.MANIFEST).read_text()
            ).get("held_out_check")
    flops_per_token = model.flops_per_token(cfg.data.seq_len)
    tps = state.tokens / state.elapsed if state.elapsed else 0.0
    out["throughput"] = {
        "train_tokens_per_s": tps,
        "flops_per_token": flops_per_token,
        "achieved_flops": tps * flops_per_token,
        "peak_flops": None,
        "mfu": None,
    }
    out["latency"] = None
    if cfg.eval.profile:
        out["latency"] = profile.latency(
            model, device, PROFILE_LENGTHS, repeats=cfg.eval.profile_repeats, autocast=autocast
        )
        peak_dtype = torch.float32 if cfg.runtime.dtype == "fp32" else torch.bfloat16
        peak = profile.matmul_peak(device, peak_dtype, seconds=0.5)
        out["throughput"].update(
            peak_flops=peak,
            peak_dtype=str(peak_dtype).split(".")[-1],
            mfu=tps * flops_per_token / peak if peak else None,
        )
    out["memory"] = profile.peak_memory(device)
    out["params"] = model.param_counts()
    return out


def _ppl(rec: dict) -> dict:
    return {
        k: rec[k]
        for k in (
            "loss",
            "token_ppl",
            "word_ppl",
            "bits_per_byte",
            "scored_tokens",
            "word_level_tokens",
            "bytes",
            "partial",
        )
    }
