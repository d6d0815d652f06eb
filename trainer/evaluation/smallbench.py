"""SmallBench, the scorer: a model is right on a pair when it gives the grammatical sentence the
higher summed log-likelihood (lm-evaluation-harness's BLiMP convention), after the `<nl>` token
that ends the previous line. That context is one the model trained on (every line of the data
follows one), unlike BOS, which training never shows: conditioning on an untrained BOS row moved
one task between 0.44 and 0.64 as that row was redrawn. The suite itself is built by
`trainer.prep.smallbench`.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from trainer.prep.tokenizer import NL_ID, PAD_ID


def wikitext_style(sentence: str) -> str:
    """BLiMP's plain English in WikiText-2's tokenisation ('has n't', 'dog 's', 'end .')."""
    s = re.sub(r"n't\b", " n't", sentence)
    s = re.sub(r"'(s|re|ve|ll|d|m)\b", r" '\1", s)
    s = re.sub(r"([.,!?;:])", r" \1", s)
    return " ".join(s.split())


@torch.no_grad()
def sentence_logprobs(
    model, sp, sentences: list[str], device: torch.device, batch_size: int = 64
) -> list[float]:
    """Summed log p(sentence tokens | <nl>) for each sentence."""
    return sentence_scores(model, sp, sentences, device, batch_size)[0]


@torch.no_grad()
def sentence_scores(
    model, sp, sentences: list[str], device: torch.device, batch_size: int = 64
) -> tuple[list[float], list[int]]:
    """(summed log p(sentence tokens | <nl>), token count) for each sentence."""
    was_training = model.training
    model.eval()
    encoded = [sp.encode(wikitext_style(s)) for s in sentences]
    out: list[float] = []
    for b in range(0, len(encoded), batch_size):
        group = encoded[b : b + batch_size]
        T = max(len(ids) for ids in group)
        x = np.full((len(group), T + 1), PAD_ID, dtype=np.int64)
        mask = np.zeros((len(group), T), dtype=bool)
        for i, ids in enumerate(group):
            x[i, 0] = NL_ID  # the end of a previous line: a context seen in training
            x[i, 1 : len(ids) + 1] = ids
            mask[i, : len(ids)] = True
        xt = torch.from_numpy(x).to(device)
        logits, _ = model(xt[:, :-1])
        logp = torch.log_softmax(logits.float(), dim=-1)
        tok = logp.gather(-1, xt[:, 1:].unsqueeze(-1)).squeeze(-1)
        # right padding cannot leak into real positions: attention is causal
        tok = tok * torch.from_numpy(mask).to(device)
        out.extend(tok.sum(dim=1).tolist())
    model.train(was_training)
    return out, [len(ids) for ids in encoded]


BOOTSTRAP = 1000  # resamples of the items, with a fixed seed: the same answer every time


def score(model, sp, suite: dict[str, list[dict]], device: torch.device) -> dict:
    """Per-task accuracy with its standard error over items, per-field and macro averages.
    Beside the summed log-likelihood (the convention), the length-normalised one (mean per
    token: `acc_norm`), and each task's share of pairs whose sentences differ in token count
    (`length_mismatch`; summed scores then carry a length prior). The macro's standard error is
    a bootstrap over items within tasks: items only. Model noise (another init seed) is larger,
    and is measured across seeds (the report's bootstrap over seeds and items, from `hits`) and
    against untrained models (`trainer.evaluation.smallbench_reference`), not here."""
    tasks, hits = {}, {}
    for task, pairs in suite.items():
        if not pairs:
            continue
        lp, lens = sentence_scores(
            model, sp, [p["good"] for p in pairs] + [p["bad"] for p in pairs], device
        )
        n = len(pairs)
        right = np.array([g > b for g, b in zip(lp[:n], lp[n:], strict=True)])
        pairs_lp = list(zip(lp[:n], lp[n:], lens[:n], lens[n:], strict=True))
        norm = [g / max(1, lg) > b / max(1, lb) for g, b, lg, lb in pairs_lp]
        mismatch = sum(lg != lb for _, _, lg, lb in pairs_lp) / n
        acc = float(right.mean())
        hits[task] = right
        tasks[task] = {
            "field": pairs[0]["field"],
            "n": n,
            "correct": int(right.sum()),
            "acc": acc,
            "stderr": math.sqrt(acc * (1 - acc) / n),
            "acc_norm": sum(norm) / n,
            "length_mismatch": mismatch,
            "length_mismatched": mismatch > 0.5,
        }
    k = len(tasks)
    macro = sum(t["acc"] for t in tasks.values()) / k
    fields: dict[str, list[float]] = {}
    for t in tasks.values():
        fields.setdefault(t["field"], []).append(t["acc"])
    return {
        "tasks": tasks,
        "by_field": {f: sum(v) / len(v) for f, v in sorted(fields.items())},
        "macro_acc": macro,
        "macro_stderr": _bootstrap_macro_se(list(hits.values())),
        "macro_stderr_kind": "bootstrap over items within tasks (not model noise)",
        "macro_acc_norm": sum(t["acc_norm"] for t in tasks.values()) / k,
        "length_mismatched_tasks": sorted(t for t, v in tasks.items() if v["length_mismatched"]),
        "pairs": sum(t["n"] for t in tasks.values()),
        # each pair right (1) or not (0), in suite order: what a bootstrap over seeds and items
        # (the report's, for finalists) resamples
        "hits": {t: "".join("1" if x else "0" for x in h) for t, h in hits.items()},
    }


def _bootstrap_macro_se(hits: list[np.ndarray]) -> float:
    """The macro accuracy's standard error: its spread when each task's items are resampled."""
    rng = np.random.default_rng(0)
    draws = np.zeros(BOOTSTRAP)
    for h in hits:
        idx = rng.integers(0, len(h), size=(BOOTSTRAP, len(h)))
        draws += h[idx].mean(axis=1)
    return float((draws / len(hits)).std(ddof=1))
