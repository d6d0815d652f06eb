"""The training harness: one run, one directory, resumable bit for bit.

Run directory: config.json, plan.json, checkpoints/, metrics.jsonl (events as they happen),
metrics.json (the final document, schema in docs/metrics.md), train.log when launched by the
runner, lr_find.{csv,png} for LR range tests. Exit codes: `trainer.exits`.

A run reads in four steps: `set_up` (build or resume), `train_loop` (optimizer steps, logging,
periodic evaluation, checkpoints, stops), `final_evaluation` (trainer/evaluation/final.py: whole
splits, SmallBench, profile) and `finish` (metrics.json, trainer/metrics_doc.py, posted to the
runner when there is one). The run's state is trainer/run_state.py.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import numpy as np
import torch

from trainer import checkpoint as ckpt
from trainer.config import ConfigError, TrainConfig
from trainer.data import Batches
from trainer.evaluation.final import EVAL_KEYS, evaluate, final_evaluation
from trainer.evaluation.profile import LENGTHS as PROFILE_LENGTHS
from trainer.evaluation.profile import sync
from trainer.exits import EXIT_KILLED, EXIT_OK, EXIT_PREEMPTED
from trainer.metrics_doc import metrics_document
from trainer.model import GPT
from trainer.prep.tokenizer import load_tokens
from trainer.progress import Progress
from trainer.reporting import reporters_for
from trainer.reporting.base import Reporter
from trainer.run_guard import RunLock, StopSignal
from trainer.run_state import Run, RunState, timed
from trainer.runs import METRICS, write_json
from trainer.runtime import (
    WARMUP_STEPS,
    build_optimizer,
    compile_counts,
    compiled_frames,
    place_model,
    precision,
    prepare,
)
from trainer.schedule import lr_at, wsd_decay


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
        state = RunState.from_meta(meta)
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
        first_step=state.step,
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
        **st.to_meta(),
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
    warm = st.step - run.first_step >= WARMUP_STEPS
    if cfg.runtime.compile and run.frames_at_warmup is None and warm:
        run.frames_at_warmup = compiled_frames()
    return loss.detach(), gnorm, lr


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
        if (
            outcome[1] == EXIT_OK
            and eval_every
            and (not st.evals or st.evals[-1]["step"] != st.step)
        ):
            periodic_eval(run)  # the end of the run (and of its decay) is always evaluated
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
        if cfg.runtime.compile:
            metrics["compile"] = compile_counts(run.frames_at_warmup, cfg.runtime.compile_mode)
        return finish(run, metrics, t_start)
