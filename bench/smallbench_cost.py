#!/usr/bin/env python3
"""What scoring every BLiMP paradigm costs (issue 28): SmallBench's 9 paradigms against all 67
(`eval.smallbench_tasks: all`), for one model and for the untrained band that comes with it
(5 inits, once per tokenizer and shape), on this machine. Prints one JSON document last.

Both suites are built from BLiMP (the official archive, or --mirror / $PAX_DATA_MIRROR) into a
temporary folder, held out against data/wikitext-2/train.txt where it exists. The model is an
untrained one of the given shape: scoring a trained model costs the same.

    python bench/smallbench_cost.py                                   # 10M, V=5k, CPU
    python bench/smallbench_cost.py --total-params 1300000 --tokenized-dir data/lm_tokenized
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from trainer.config import validate  # noqa: E402
from trainer.evaluation.smallbench import score  # noqa: E402
from trainer.evaluation.smallbench_reference import INITS, unigram  # noqa: E402
from trainer.model import GPT  # noqa: E402
from trainer.prep.smallbench import build_suite, load_suite  # noqa: E402
from trainer.prep.tokenizer import load_tokenizer, tokenized_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total-params", type=int, default=10_000_000)
    ap.add_argument("--vocab-size", type=int, default=5000)
    ap.add_argument("--tokenized-dir", default="data/lm_tokenized", help="holds sp<V>/")
    ap.add_argument("--mirror", default=None, help="BLiMP mirror (else $PAX_DATA_MIRROR)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    raw = {
        "name": "smallbench-cost",
        "max_tokens": 4096,
        "model": {"total_params": args.total_params, "vocab_size": args.vocab_size},
        "data": {"tokenized_dir": args.tokenized_dir, "seq_len": 128, "batch_size": 8},
    }
    cfg = validate(raw)
    tok = tokenized_dir(Path(args.tokenized_dir), args.vocab_size)
    sp = load_tokenizer(tok)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = GPT.from_plan(cfg.plan(), max_seq_len=cfg.data.seq_len).to(device).eval()

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path("data/wikitext-2/train.txt")
        for tasks in ("smallbench", "all"):
            build_suite(Path(tmp), mirror=args.mirror, corpus=corpus, tasks=tasks)
            suite = load_suite(Path(tmp), tasks)
            t0 = time.perf_counter()
            s = score(model, sp, suite, device)
            one = time.perf_counter() - t0
            t0 = time.perf_counter()
            unigram(tok, sp, suite)
            uni = time.perf_counter() - t0
            out[tasks] = {
                "paradigms": len(suite),
                "pairs": s["pairs"],
                "score_one_model_s": round(one, 2),
                # a run pays this once per tokenizer and shape (the band's cache)
                "untrained_band_s": round(INITS * one, 2),
                "unigram_s": round(uni, 2),
                "first_run_of_a_shape_s": round((INITS + 1) * one + uni, 2),
                "macro_acc_untrained_init0": round(s["macro_acc"], 4),
            }
    ratio = out["all"]["score_one_model_s"] / max(out["smallbench"]["score_one_model_s"], 1e-9)
    print(
        json.dumps(
            {
                "bench": "smallbench_cost",
                "device": str(device),
                "machine": platform.machine(),
                "threads": torch.get_num_threads(),
                "shape": {"total_params": args.total_params, "vocab_size": args.vocab_size},
                "suites": out,
                "all_over_smallbench": round(ratio, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
