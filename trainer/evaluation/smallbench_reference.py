"""SmallBench's references: what a score means. An untrained model does not score 0.5 per task:
seven inits of one shape scored macro 0.44 to 0.61, and `only_npi_licensor_present` 0.13 to
0.93, because token counts and random embeddings already prefer one sentence of a pair. So each
run is scored beside an untrained model of its own shape (the band over `INITS` inits) and a
unigram model of the training tokens, both on its tokenizer. Computed once per tokenizer, shape
and suite, and cached in the tokenizer's folder (the seeds of a cell, and its finalists, share
one band)."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from trainer.evaluation.smallbench import score, wikitext_style
from trainer.evaluation.smallbench_band import BAND_SDS, against_band
from trainer.model import GPT
from trainer.prep.tokenizer import load_tokens

INITS = 5  # the reference: mean and spread over 5 untrained inits
CACHE = "smallbench_reference.json"


def references(cfg, tok_dir: Path, sp, suite: dict[str, list[dict]], device) -> dict:
    """{"untrained": band, "unigram": scores, "cached": bool} for this run's shape and suite."""
    plan = cfg.plan()
    key = _key(asdict(plan), suite)
    path = Path(tok_dir) / CACHE
    cache = _read(path)
    if key in cache:
        return {**cache[key], "cached": True}
    out = {
        "untrained": untrained_band(plan, cfg.data.seq_len, sp, suite, device),
        "unigram": unigram(tok_dir, sp, suite),
    }
    _write(path, key, out)
    return {**out, "cached": False}


def untrained_band(plan, seq_len: int, sp, suite: dict, device, inits: int = INITS) -> dict:
    """Macro and per-task accuracy of `inits` untrained models of this shape (init seeds 0..):
    their mean, sample sd, min, max, and the band mean +/- 2 sd."""
    macros: list[float] = []
    tasks: dict[str, list[float]] = {}
    with torch.random.fork_rng(devices=[]):  # the run's own RNG state is left as it was
        for seed in range(inits):
            torch.manual_seed(seed)
            model = GPT.from_plan(plan, max_seq_len=seq_len).to(device)
            s = score(model, sp, suite, device)
            macros.append(s["macro_acc"])
            for t, v in s["tasks"].items():
                tasks.setdefault(t, []).append(v["acc"])
            del model
    return {
        "inits": inits,
        "init_seeds": list(range(inits)),
        "macro": _spread(macros),
        "tasks": {t: _spread(v) for t, v in sorted(tasks.items())},
    }


def unigram(tok_dir: Path, sp, suite: dict) -> dict:
    """Accuracy of a unigram model of the training tokens (add-one): what token frequency and
    sentence length alone prefer. A tie counts half."""
    train = load_tokens(tok_dir, "train")
    counts = np.bincount(np.asarray(train, dtype=np.int64), minlength=sp.get_piece_size()) + 1.0
    logp = np.log(counts / counts.sum())
    tasks = {}
    for task, pairs in suite.items():
        if not pairs:
            continue
        right = 0.0
        for p in pairs:
            g = logp[sp.encode(wikitext_style(p["good"]))].sum()
            b = logp[sp.encode(wikitext_style(p["bad"]))].sum()
            right += 1.0 if g > b else 0.5 if g == b else 0.0
        tasks[task] = right / len(pairs)
    return {"macro_acc": statistics.fmean(tasks.values()), "tasks": tasks}


def run_against_band(macro: float | None, band: dict | None) -> str | None:
    """A run's macro accuracy against its untrained band (`smallbench_band.against_band`)."""
    if not band:
        return None
    return against_band(macro, band["macro"]["mean"], band["macro"]["sd"])


def _spread(values: list[float]) -> dict:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "mean": mean,
        "sd": sd,
        "min": min(values),
        "max": max(values),
        "band_low": mean - BAND_SDS * sd,
        "band_high": mean + BAND_SDS * sd,
        "values": values,
    }


def _key(shape: dict, suite: dict) -> str:
    blob = json.dumps({"shape": shape, "suite": suite, "inits": INITS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or a torn one: computed again


def _write(path: Path, key: str, value: dict) -> None:
    """Merge one entry in, atomically (runs sharing a tokenizer may write at once: the loser's
    entry is computed again next time, never half-written)."""
    cache = {**_read(path), key: value}
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sbref-")
        with os.fdopen(fd, "w") as f:
            json.dump(cache, f, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only tokenizer folder: the reference is still returned, just not kept
