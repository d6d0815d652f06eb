"""Evaluate a finished (or interrupted) run from its directory: `pax eval --run-dir DIR`."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.export import load_final_model


def evaluate_run(run_dir: Path, *, smallbench_dir: Path | None = None, only: str = "all") -> dict:
    from trainer.evaluation import profile, smallbench
    from trainer.evaluation.perplexity import evaluate_split
    from trainer.prep.smallbench import load_suite
    from trainer.prep.tokenizer import load_tokenizer, load_tokens
    from trainer.runs import write_json
    from trainer.runtime import place_model, precision, resolve_device, tune_backend

    if only not in ("all", "ppl", "smallbench", "profile"):
        raise ValueError(f"--only {only!r}: choose all, ppl, smallbench or profile")
    run_dir = Path(run_dir)
    # the model the run's own final evaluation scored
    model, cfg, meta = load_final_model(run_dir, lengths=profile.LENGTHS)
    device = resolve_device(cfg.runtime.device)
    tune_backend(device)
    autocast, _, _ = precision(device, cfg.runtime.dtype)
    model = place_model(model, cfg, device).eval()
    tok_dir = cfg.tokenized_path()
    splits = json.loads((tok_dir / "manifest.json").read_text())["splits"]
    out: dict = {"run_dir": str(run_dir), "step": meta["step"], "tokens": meta["tokens"]}
    if only in ("all", "ppl"):
        for split, key in (("valid", "dev"), ("test", "test")):
            out[key] = evaluate_split(
                model,
                load_tokens(tok_dir, split),
                splits[split],
                cfg.data.seq_len,
                device,
                autocast=autocast,
                # as the run's own final evaluation did
                stride=cfg.eval.stride if cfg.eval.stride is not None else cfg.data.seq_len // 2,
            )
    if only in ("all", "smallbench"):
        suite = load_suite(
            Path(smallbench_dir or cfg.eval.smallbench_dir), cfg.eval.smallbench_tasks
        )
        out["smallbench"] = smallbench.score(model, load_tokenizer(tok_dir), suite, device)
    if only in ("all", "profile"):
        with profile.Window() as window:
            out["latency"] = profile.latency(
                model, device, profile.LENGTHS, repeats=cfg.eval.profile_repeats, autocast=autocast
            )
        out["latency_window"] = window.as_dict()
        out["latency_contended"] = bool(window.contended(device))
        out["memory"] = profile.peak_memory(device)
    write_json(run_dir / "eval.json", out)
    return out
