"""The training harness: one run, one directory, resumable bit for bit.

Run directory: config.json, plan.json, checkpoints/, metrics.jsonl (events as they happen),
metrics.json (the final document, schema in docs/metrics.md), train.log when launched by the
runner, lr_find.{csv,png} for LR range tests. Exit codes: `trainer.exits`.

A run reads in four steps: `set_up` (build or resume), `train_loop` (optimizer steps, logging,
periodic evaluation, checkpoints, stops), `final_evaluation` (whole splits, SmallBench, profile)
and `finish` (metrics.json, posted to the runner when there is one).
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainer import checkpoint as ckpt
from trainer.config import ConfigError, TrainConfig
from trainer.data import Batches
from trainer.evaluation.perplexity import evaluate_split
from trainer.evaluation.profile import LENGTHS as PROFILE_LENGTHS
from trainer.evaluation.profile import sync
from trainer.exits import EXIT_KILLED, EXIT_OK, EXIT_PREEMPTED
from trainer.model import GPT
from trainer.params import Plan
from trainer.prep.tokenizer import load_tokens
from trainer.progress import Progress
from trainer.reporting import reporters_for
from trainer.reporting.base import Reporter, Reporters
from trainer.run_guard import RunLock, StopSignal
from trainer.runs import METRICS, write_json
from trainer.runtime import build_optimizer, place_model, precision, prepare
from trainer.schedule import lr_at, wsd_decay

METRICS_SCHEMA_VERSION = 1
EVAL_KEYS = ("step", "tokens", "token_ppl", "word_ppl", "bits_per_byte", "loss")


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


# ---------------------------------------------------------------- the run's state


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
    fwd: torch.nn.Module
    optimizer: torch.optim.Optimizer
    report: Reporters
    state: RunState
    resumed: bool
    overfit_tokens: int = 0
    # wall seconds of this attempt by phase (metrics.json "timings"): where a run's time goes
    timings: dict = field(default_factory=dict)
    last_saved_step: int = -1
    last_ckpt_time: float = field(default_factory=time.time)

    @property
    def sample(self) -> bool:
        return bool(self.tok_manifest.get("sample"))

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"


def _load_data(cfg: TrainConfig) -> tuple[Path, dict, dict]:
    tok_dir = cfg.tokenized_path()
    manifest_path = tok_dir / "manifest.json"
    if (missing := cfg.missing_data()) is not None:
        raise ConfigError(missing)
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


# ---------------------------------------------------------------- 1) set-up and resume


def set_up(cfg: TrainConfig, run_dir: Path, extra: list[Reporter], overfit_tokens: int = 0) -> Run:
    """Device, seeds, data, model and optimizer; then the latest checkpoint, if any."""
    device = prepare(cfg)
    autocast, scaler, used_dtype = precision(device, cfg.runtime.dtype)
    plan = cfg.plan()
    tok_dir, tok_manifest, data_manifest = _load_data(cfg)
    cfg = budget_in_tokens(cfg, tok_manifest)
    train_tokens = load_tokens(tok_dir, "train")
    if overfit_tokens:
        train_tokens = np.asarray(train_tokens[: overfit_tokens + 1])
    batches = Batches(
        train_tokens,
        cfg.data.seq_len,
        cfg.data.batch_size,
        cfg.runtime.seed,
        pin=device.type == "cuda",
    )
    model = GPT.from_plan(
        plan, max_seq_len=max(cfg.data.seq_len, *PROFILE_LENGTHS), dropout=cfg.model.dropout
    )
    model = place_model(model, cfg, device)
    optimizer = build_optimizer(model, cfg, device)
    fwd = model.compiled(cfg.runtime.compile_mode) if cfg.runtime.compile else model
    (run_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
    (run_dir / "plan.json").write_text(plan.to_json())

    state = RunState()
    resumed = ckpt.latest(run_dir / "checkpoints") if cfg.checkpoint.resume else None
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
            decay_start=meta.get("decay_start"),
            stop_reason=meta.get("stop_reason"),
        )
    state.attempts += 1
    report = reporters_for(
        run_dir, cfg, resume_step=state.step if resumed is not None else None, extra=extra
    )
    run = Run(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        autocast=autocast,
        scaler=scaler,
        dtype=used_dtype,
        plan=plan,
        tok_dir=tok_dir,
        tok_manifest=tok_manifest,
        data_manifest=data_manifest,
        batches=batches,
        model=model,
        fwd=fwd,
        optimizer=optimizer,
        report=report,
        state=state,
        resumed=resumed is not None,
        overfit_tokens=overfit_tokens,
        last_saved_step=state.step if resumed is not None else -1,
    )
    report.log(
        {
            "event": "start",
            "step": state.step,
            "tokens": state.tokens,
            "attempt": state.attempts,
            "resumed": run.resumed,
            "device": str(device),
            "dtype": used_dtype,
        }
    )
    return run


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


def budget_in_tokens(cfg: TrainConfig, tok_manifest: dict) -> TrainConfig:
    """A budget given in passes over the train split, in tokens of this tokenization."""
    if not cfg.max_passes:
        return cfg
    tokens = round(cfg.max_passes * tok_manifest["splits"]["train"]["tokens"])
    if tokens < cfg.tokens_per_step:
        raise ConfigError(
            f"max_passes={cfg.max_passes} is {tokens} tokens, less than one step "
            f"({cfg.tokens_per_step}); raise max_passes"
        )
    return cfg.model_copy(update={"max_tokens": tokens})


def save_checkpoint(run: Run) -> None:
    with timed(run, "checkpoint_s"):
        _save_checkpoint(run)


def _save_checkpoint(run: Run) -> None:
    st, cfg = run.state, run.cfg
    meta = {
        "spec_hash": cfg.spec_hash(),
        "tokens": st.tokens,
        "elapsed": st.elapsed,
        "last_loss": st.last_loss,
        "evals": st.evals,
        "attempts": st.attempts,
        "decay_start": st.decay_start,
        "stop_reason": st.stop_reason,
        "data_position": run.batches.position(st.step),
        "config": cfg.model_dump(),
        "time": time.time(),
    }
    weights = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
    }
    ckpt.save(run.ckpt_dir, st.step, weights, meta, cfg.checkpoint.keep_latest_k)
    run.last_saved_step = st.step
    run.last_ckpt_time = time.time()
    run.report.log({"event": "checkpoint", "step": st.step, "tokens": st.tokens})


# ---------------------------------------------------------------- 2) the training loop


def train_step(run: Run) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """One optimizer step: (loss, grad norm before clipping, lr), tensors left on the device."""
    cfg, st = run.cfg, run.state
    lr = lr_at(
        st.step,
        lr=cfg.optim.lr,
        warmup_steps=math.ceil(cfg.optim.warmup_tokens / cfg.tokens_per_step),
        total_steps=cfg.total_steps,
        min_lr_ratio=cfg.optim.min_lr_ratio,
        schedule=cfg.optim.schedule,
        decay_fraction=cfg.optim.decay_fraction,
        decay_start=st.decay_start,
    )
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    x, y = run.batches.get(st.step)
    x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
    with run.autocast():
        _, loss = run.fwd(x, y)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
    else:
        loss.backward()
    gnorm = (
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
        if cfg.optim.grad_clip > 0
        else None
    )
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    st.step += 1
    st.tokens += cfg.tokens_per_step
    return loss.detach(), gnorm, lr


def evaluate(run: Run, split: str, max_tokens: int = 0, final: bool = False) -> dict:
    """One split's perplexities: interval evals non-overlapping (cheap, comparable along the
    curve), the final one strided as well (eval.stride)."""
    seq = run.cfg.data.seq_len
    stride = run.cfg.eval.stride if run.cfg.eval.stride is not None else seq // 2
    res = evaluate_split(
        run.fwd,
        load_tokens(run.tok_dir, split),
        run.tok_manifest["splits"][split],
        seq,
        run.device,
        max_tokens=max_tokens,
        autocast=run.autocast,
        stride=stride if final else 0,
    )
    rec = {
        "event": "eval",
        "split": split,
        "final": final,
        "step": run.state.step,
        "tokens": run.state.tokens,
        **res,
    }
    run.report.log(rec)
    return rec


def periodic_eval(run: Run) -> str | None:
    """Evaluate dev; an early-stop reason when it has not improved for `patience` evals."""
    with timed(run, "periodic_eval_s"):
        rec = evaluate(run, "valid", run.cfg.eval.max_tokens)
    evals = run.state.evals
    evals.append({k: rec[k] for k in EVAL_KEYS})
    if rec["token_ppl"] <= min(e["token_ppl"] for e in evals):
        with timed(run, "checkpoint_s"):
            ckpt.save_best(run.ckpt_dir, run.model.state_dict(), {k: rec[k] for k in EVAL_KEYS})
    patience = run.cfg.eval.early_stop_patience
    if patience and len(evals) > patience:
        best = min(e["token_ppl"] for e in evals[:-patience])
        if min(e["token_ppl"] for e in evals[-patience:]) >= best:
            return f"early stop: no better dev PPL in {patience} evals (best {best:.3f})"
    return None


def train_loop(run: Run, stop: StopSignal, show_progress: bool) -> tuple[str, int, str]:
    """(status, exit code, reason). Each step: 1) optimize 2) log every log.every_steps
    3) evaluate dev every eval.every_tokens (early stop) 4) checkpoint on schedule 5) stop on a
    signal or on the runner's word. The final (or interrupted) state is checkpointed once."""
    cfg, st = run.cfg, run.state
    eval_every = cfg.eval.every_tokens if not run.overfit_tokens else 0
    bar = Progress(cfg.total_steps * cfg.tokens_per_step, st.tokens, enabled=show_progress)
    outcome = ("succeeded", EXIT_OK, "completed the token budget")
    # Training time and the loss of the log window stay on the device between log points: a
    # step never waits for the GPU. Time is counted up to a sync (the log's, or the one before
    # an evaluation or checkpoint), so queued GPU work is charged to training, not to them.
    window = {"elapsed": st.elapsed, "tokens": 0, "steps": 0}
    loss_sum = torch.zeros((), dtype=torch.float32, device=run.device)
    run.model.train()
    try:
        while st.step < end_step(run):
            t_step, prev_tokens = time.perf_counter(), st.tokens
            loss, gnorm, lr = train_step(run)
            loss_sum += loss.float()
            window["tokens"] += cfg.tokens_per_step
            window["steps"] += 1
            crossed = eval_every and st.tokens // eval_every > prev_tokens // eval_every
            ckpt_due = _checkpoint_due(run)
            if st.step % cfg.log.every_steps == 0 or st.step == end_step(run):
                st.last_loss = float(loss)  # the host sync of the log interval
                st.elapsed += time.perf_counter() - t_step
                _log_train(run, bar, window, float(loss_sum), gnorm, lr)
                loss_sum.zero_()
                window = {"elapsed": st.elapsed, "tokens": 0, "steps": 0}
            else:
                if crossed or ckpt_due:
                    sync(run.device)
                st.elapsed += time.perf_counter() - t_step
            if crossed and (why := periodic_eval(run)) and st.decay_start is None:
                if cfg.optim.schedule != "wsd":
                    outcome = ("succeeded", EXIT_OK, why)
                    break
                # wsd: anneal before stopping (a short decay from here), then end
                st.decay_start, st.stop_reason = st.step, why
                run.report.log(
                    {"event": "decay", "step": st.step, "tokens": st.tokens, "until": end_step(run)}
                )
            if ckpt_due:
                save_checkpoint(run)
            if stop.signum is not None:
                name = signal.Signals(stop.signum).name
                outcome = ("preempted", EXIT_PREEMPTED, f"received {name}; checkpoint written")
                break
            if ask := run.report.stop_requested():
                # told to stop: by the kill rule or a cancel (evaluate, then exit 3), or because
                # another attempt owns the run now (checkpoint and leave, like a preemption)
                outcome = (
                    ("preempted", EXIT_PREEMPTED, ask.reason)
                    if ask.yield_run
                    else ("killed", EXIT_KILLED, ask.reason)
                )
                break
        if st.stop_reason and st.step >= end_step(run) and outcome[1] == EXIT_OK:
            outcome = ("succeeded", EXIT_OK, f"{st.stop_reason}; then a short wsd decay")
        if st.step != run.last_saved_step:
            save_checkpoint(run)
    finally:
        bar.close()
    return outcome


def end_step(run: Run) -> int:
    """The last step: the budget's, or the end of the short decay after a wsd early stop."""
    st, cfg = run.state, run.cfg
    if st.decay_start is None:
        return cfg.total_steps
    return wsd_decay(cfg.total_steps, cfg.optim.decay_fraction, st.decay_start)[1]


def _log_train(run: Run, bar: Progress, window: dict, loss_sum: float, gnorm, lr: float) -> None:
    st = run.state
    if not math.isfinite(st.last_loss):
        raise FloatingPointError(
            f"train loss is {st.last_loss} at step {st.step}; lower optim.lr or "
            "raise optim.warmup_tokens"
        )
    tps = window["tokens"] / max(1e-9, st.elapsed - window["elapsed"])
    run.report.log(
        {
            "event": "train",
            "step": st.step,
            "tokens": st.tokens,
            "loss": st.last_loss,  # this step's (a resumed run logs the same values)
            "loss_mean": loss_sum / max(1, window["steps"]),  # the window's, since the last log
            "lr": lr,
            "tokens_per_s": tps,
            "grad_norm": float(gnorm) if gnorm is not None else None,
            # training wall time so far (all attempts): the dashboard's wall-time x axis
            "elapsed_s": st.elapsed,
        }
    )
    bar.update(st.tokens, st.last_loss, tps)


def _checkpoint_due(run: Run) -> bool:
    c = run.cfg.checkpoint
    by_steps = c.every_steps and run.state.step % c.every_steps == 0
    by_time = c.every_minutes and time.time() - run.last_ckpt_time >= 60 * c.every_minutes
    return bool(by_steps or by_time)


# ---------------------------------------------------------------- 3) final evaluation


def final_evaluation(run: Run) -> dict:
    """Dev/test perplexity (whole splits unless eval.final_max_tokens caps them), SmallBench,
    latency, memory, throughput and MFU."""
    from trainer.evaluation import profile

    cfg, st, model, device = run.cfg, run.state, run.model, run.device
    selected = select_final_model(run)
    with timed(run, "final_eval_s"):
        cap = cfg.eval.final_max_tokens
        out: dict = {"dev": _ppl(evaluate(run, "valid", max_tokens=cap, final=True))}
        out["test"] = (
            _ppl(evaluate(run, "test", max_tokens=cap, final=True)) if cfg.eval.test else None
        )
    out["smallbench"] = None
    if cfg.eval.smallbench:
        with timed(run, "smallbench_s"):
            out["smallbench"] = _smallbench(run)
    flops_per_token = model.flops_per_token(cfg.data.seq_len)
    tps = st.tokens / st.elapsed if st.elapsed else 0.0
    out["throughput"] = {
        "train_tokens_per_s": tps,
        "flops_per_token": flops_per_token,
        "achieved_flops": tps * flops_per_token,
        "peak_flops": None,
        "mfu": None,
    }
    out["latency"] = None
    if cfg.eval.profile:
        with timed(run, "profile_s"):
            _profile(run, out, tps, flops_per_token)
    out["memory"] = profile.peak_memory(device)
    out["params"] = model.param_counts()
    out["final_model"] = selected
    return out


def select_final_model(run: Run) -> dict:
    """Load the best interval-dev model for the final evaluation (eval.final_model=best), so a
    run that early-stopped, or whose dev curve turned, is judged by its best model, not its
    last one. Says which model was scored, and what the last interval eval read."""
    evals = run.state.evals
    last = evals[-1] if evals else None
    out = {"kind": "last", "step": run.state.step, "tokens": run.state.tokens, "last_eval": last}
    if run.cfg.eval.final_model != "best" or not evals:
        return out
    found = ckpt.load_best(run.ckpt_dir)
    if found is None:
        return out
    state, meta = found
    if meta["step"] != run.state.step:
        run.model.load_state_dict(state)
    return {
        **out,
        "kind": "best",
        "step": meta["step"],
        "tokens": meta["tokens"],
        "best_eval": meta,
    }


def _smallbench(run: Run) -> dict:
    from trainer.evaluation import smallbench
    from trainer.prep.smallbench import MANIFEST, load_suite
    from trainer.prep.tokenizer import load_tokenizer

    suite_dir = Path(run.cfg.eval.smallbench_dir)
    try:
        suite = load_suite(suite_dir)
    except FileNotFoundError as e:
        return {"skipped": str(e)}
    out = smallbench.score(run.model, load_tokenizer(run.tok_dir), suite, run.device)
    out["suite_manifest"] = json.loads((suite_dir / MANIFEST).read_text()).get("held_out_check")
    return out


def _profile(run: Run, out: dict, tps: float, flops_per_token: int) -> None:
    from trainer.evaluation import profile

    cfg, device = run.cfg, run.device
    busy = profile.contended(device)
    # prefill: a full forward over a prompt at batch 1 (full logits)
    out["latency"] = profile.latency(
        run.model, device, PROFILE_LENGTHS, repeats=cfg.eval.profile_repeats, autocast=run.autocast
    )
    out["decode_latency"] = profile.decode_latency(
        run.model, device, PROFILE_LENGTHS, autocast=run.autocast
    )
    out["inference_memory"] = profile.inference_memory(run.model, device, autocast=run.autocast)
    out["latency_contended"] = bool(busy or profile.contended(device))
    peak_dtype = torch.float32 if cfg.runtime.dtype == "fp32" else torch.bfloat16
    peak = profile.matmul_peak(device, peak_dtype, seconds=0.5)
    out["throughput"].update(
        peak_flops=peak,
        peak_dtype=str(peak_dtype).split(".")[-1],
        mfu=tps * flops_per_token / peak if peak else None,
    )


def _ppl(rec: dict) -> dict:
    keys = (
        "loss",
        "token_ppl",
        "word_ppl",
        "bits_per_byte",
        "scored_tokens",
        "word_level_tokens",
        "bytes",
        "partial",
        "windowing",
    )
    out = {k: rec[k] for k in keys}
    if "nonoverlap" in rec:
        out["nonoverlap"] = rec["nonoverlap"]
    return out


# ---------------------------------------------------------------- 4) the metrics document


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


def finish(run: Run, metrics: dict, t_start: float) -> tuple[int, dict]:
    """Write metrics.json and hand it to the reporters (not for a preempted attempt: the next one
    writes it), then close them (the runner's reporter flushes)."""
    run_info = metrics["run"]
    run_info["finished_at"] = time.time()
    run_info["total_wall_time_s"] = time.time() - t_start
    if run_info["status"] != "preempted":
        write_json(run.run_dir / METRICS, metrics)
        run.report.result(metrics)
    run.report.log(
        {
            "event": "end",
            "step": run.state.step,
            "tokens": run.state.tokens,
            "status": run_info["status"],
            "exit_code": run_info["exit_code"],
            "reason": run_info["exit_reason"],
        }
    )
    run.report.close()
    return run_info["exit_code"], metrics


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
        t_start = time.time()
        run = set_up(cfg, run_dir, reporters or [], overfit_tokens)
        run.timings["set_up_s"] = time.time() - t_start
        status, exit_code, reason = train_loop(run, stop, progress)
        metrics = metrics_document(run, status, exit_code, reason)
        if status in ("succeeded", "killed") and not overfit_tokens:
            metrics.update(final_evaluation(run))
        # training over all attempts; the other phases are this attempt's wall seconds
        metrics["timings"] = {"train_s": run.state.elapsed, **run.timings}
        return finish(run, metrics, t_start)
