#!/usr/bin/env python3
"""Cosine vs warmup-stable-decay: dev word PPL per token on the same data, model and seed.

The finalists' question (issue 14): which schedule gives the better dev PPL for the tokens
spent, when the run may end at its budget or be stopped early. Each schedule trains the demo's
baseline (1.3M parameters, V=5k, the sample data) at two budgets; every interval dev eval is
recorded, so the table shows PPL at each point of the way. Prints one JSON document last.

    python bench/schedules.py --tokens 262144 131072
    python bench/schedules.py --tokens 98304 --dropout 0.1   # the same, with dropout
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import validate  # noqa: E402
from trainer.train import train  # noqa: E402


def config(schedule: str, tokens: int, tok_dir: str, dropout: float = 0.0) -> dict:
    return {
        "name": f"{schedule}-{tokens}-d{dropout:g}",
        "max_tokens": tokens,
        "model": {"total_params": 1_300_000, "vocab_size": 5000, "dropout": dropout},
        "data": {"tokenized_dir": tok_dir, "seq_len": 128, "batch_size": 16},
        "optim": {"lr": 3e-3, "warmup_tokens": 16384, "schedule": schedule},
        "eval": {
            "every_tokens": 32768,
            "max_tokens": 0,
            "smallbench": False,
            "profile": False,
            "test": False,
            "final_model": "last",
        },
        "checkpoint": {"every_steps": 0, "every_minutes": 0},
        "log": {"every_steps": 50, "wandb": False},
        "runtime": {"threads": 2, "seed": 1337},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[262144, 131072])
    ap.add_argument("--tokenized-dir", default="data/lm_tokenized")
    ap.add_argument("--dropout", type=float, default=0.0, help="model.dropout of every run")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for tokens in args.tokens:
            for schedule in ("cosine", "wsd"):
                cfg = validate(config(schedule, tokens, args.tokenized_dir, args.dropout))
                _, m = train(cfg, Path(tmp) / cfg.name, progress=False)
                rows.append(
                    {
                        "schedule": schedule,
                        "budget_tokens": tokens,
                        "dropout": args.dropout,
                        "final_dev_word_ppl": m["dev"]["word_ppl"],
                        "curve": [[e["tokens"], e["word_ppl"]] for e in m["dev_curve"]],
                        "sample": m["provenance"]["sample"],
                    }
                )
                print(f"{schedule:>6} {tokens:>8,}: {m['dev']['word_ppl']:.1f}", file=sys.stderr)
    print(json.dumps({"benchmark": "schedules", "results": rows}))


if __name__ == "__main__":
    main()
