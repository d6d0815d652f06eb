"""A run's evaluations: a split's perplexities, logged as they are measured (`evaluate`, which
the training loop's periodic evaluation uses too), and the final evaluation (whole splits,
SmallBench, latency, memory, throughput and MFU) of the model the run reports."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainer import checkpoint as ckpt
from trainer.evaluation.perplexity import evaluate_split
from trainer.evaluation.profile import LENGTHS as PROFILE_LENGTHS
from trainer.prep.tokenizer import load_tokens
from trainer.run_state import Run, timed

EVAL_KEYS = ("step", "tokens", "token_ppl", "word_ppl", "bits_per_byte", "loss")


def evaluate(run: Run, split: str, max_tokens: int = 0, final: bool = False) -> dict:
    """One split's perplexities: interval evals non-overlapping (cheap, comparable along the
    curve), the final one strided as well (eval.stride)."""
    seq = run.cfg.data.seq_len
    stride = run.cfg.eval.stride if run.cfg.eval.stride is not None else seq // 2
    res = evaluate_split(
        run.model,  # eager: the compiled step's static shapes are the training batch's alone
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
    """Load the model the final evaluation scores: the last one (TrainConfig.scores_the_end), else
    the best interval-dev one (eval.final_model=best), so that a cosine run that early-stopped
    or whose dev curve turned is judged by its best model. Says which was scored and why,
    what the last interval eval read, and the best interval eval beside it (`best_eval`)."""
    evals = run.state.evals
    last = evals[-1] if evals else None
    found = ckpt.load_best(run.ckpt_dir) if evals else None
    out = {
        "kind": "last",
        "why": "the end of the wsd decay" if run.cfg.optim.schedule == "wsd" else "asked",
        "step": run.state.step,
        "tokens": run.state.tokens,
        "last_eval": last,
        "best_eval": found[1] if found else None,
    }
    if run.cfg.scores_the_end or found is None:
        return out
    state, meta = found
    if meta["step"] != run.state.step:
        run.model.load_state_dict(state)
    return {**out, "kind": "best", "why": "the best interval dev eval", "step": meta["step"],
            "tokens": meta["tokens"]}  # fmt: skip


def _smallbench(run: Run) -> dict:
    from trainer.evaluation import smallbench, smallbench_reference
    from trainer.prep.smallbench import MANIFEST, load_suite, suite_dir
    from trainer.prep.tokenizer import load_tokenizer

    root, tasks = Path(run.cfg.eval.smallbench_dir), run.cfg.eval.smallbench_tasks
    folder = suite_dir(root, tasks)
    try:
        suite = load_suite(root, tasks)
    except FileNotFoundError as e:
        return {"skipped": str(e)}
    sp = load_tokenizer(run.tok_dir)
    out = smallbench.score(run.model, sp, suite, run.device)
    # what the score means: an untrained model of this shape (its band) and a unigram model
    out["reference"] = smallbench_reference.references(run.cfg, run.tok_dir, sp, suite, run.device)
    out["vs_untrained"] = smallbench_reference.run_against_band(
        out["macro_acc"], out["reference"]["untrained"]
    )
    manifest = json.loads((folder / MANIFEST).read_text())
    out["suite"] = {"selection": tasks, "name": manifest.get("suite"), "tasks": len(suite)}
    out["suite_manifest"] = manifest.get("held_out_check")
    return out


def _profile(run: Run, out: dict, tps: float, flops_per_token: int) -> None:
    from trainer.evaluation import profile

    cfg, device = run.cfg, run.device
    with profile.Window() as window:
        # prefill: a full forward over a prompt at batch 1 (full logits)
        out["latency"] = profile.latency(
            run.model, device, PROFILE_LENGTHS, repeats=cfg.eval.profile_repeats,
            autocast=run.autocast,
        )  # fmt: skip
        out["decode_latency"] = profile.decode_latency(
            run.model, device, PROFILE_LENGTHS, autocast=run.autocast
        )
    out["inference_memory"] = profile.inference_memory(run.model, device, autocast=run.autocast)
    out["latency_window"] = window.as_dict()  # the ledger adds the runs sharing a GPU then
    out["latency_contended"] = bool(window.contended(device))
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
