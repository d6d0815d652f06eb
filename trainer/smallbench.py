"""SmallBench: a fixed, held-out suite of BLiMP minimal pairs, and its scorer.

BLiMP (Warstadt et al., TACL 2020, CC BY 4.0): 67 paradigms x 1,000 pairs of a grammatical and
an ungrammatical sentence. SmallBench takes a deterministic sample of paradigms covering
morphology, syntax and semantics, drops (and counts) every pair whose sentence occurs in the
training corpus, and scores a model by whether it gives the good sentence the higher summed
log-likelihood after a BOS context (lm-evaluation-harness's BLiMP convention).
"""

from __future__ import annotations

import json
import math
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from trainer.fetch import (
    FetchError,
    NotOnSource,
    atomic_write_text,
    fetch,
    fetch_verified,
    mirror_sums,
    resolve_mirror,
)
from trainer.tokenizer import BOS_ID, PAD_ID

OFFICIAL_URL = "https://github.com/alexwarstadt/blimp/archive/refs/heads"
OFFICIAL_FILE = "master.zip"  # GitHub archives are not byte-stable: the hash is recorded only
MIRROR_FILE = "blimp/BLiMP.zip"
MIRROR_SHA256 = "172a1a714d72e72a89e8384dd531483f3d0f8a9aee3d33dccaf7992d8cecbb73"
LICENSE = "CC BY 4.0"
CITATION = "Warstadt et al., BLiMP: The Benchmark of Linguistic Minimal Pairs for English, 2020"
# Three paradigms per field: agreement and inflection, islands / questions / voice, quantifiers
# and NPIs, plus binding (BLiMP's syntax_semantics field).
TASKS = {
    "determiner_noun_agreement_1": "morphology",
    "regular_plural_subject_verb_agreement_1": "morphology",
    "irregular_past_participle_verbs": "morphology",
    "adjunct_island": "syntax",
    "wh_questions_object_gap": "syntax",
    "passive_1": "syntax",
    "existential_there_quantifiers_1": "semantics",
    "only_npi_licensor_present": "semantics",
    "principle_A_c_command": "syntax_semantics",
}
PAIRS_PER_TASK = 200
SUITE_SEED = 20200101
MANIFEST = "manifest.json"


def _normalize(sentence: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", sentence.lower()).split())


def corpus_sentences(text: str) -> set[str]:
    """Normalised sentences of a WikiText-style corpus (split at . ? ! and line ends)."""
    out = set()
    for line in text.split("\n"):
        for piece in re.split(r"\s[.?!]\s", line):
            norm = _normalize(piece)
            if norm:
                out.add(norm)
    return out


def wikitext_style(sentence: str) -> str:
    """BLiMP's plain English in WikiText-2's tokenisation ('has n't', 'dog 's', 'end .')."""
    s = re.sub(r"n't\b", " n't", sentence)
    s = re.sub(r"'(s|re|ve|ll|d|m)\b", r" '\1", s)
    s = re.sub(r"([.,!?;:])", r" \1", s)
    return " ".join(s.split())


def _read_zip(path: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            # data/<paradigm>.jsonl, at any depth (the GitHub archive adds blimp-master/);
            # macOS resource forks (__MACOSX/._x.jsonl) are not data
            m = re.search(r"(?:^|/)data/([A-Za-z0-9_]+)\.jsonl$", name)
            if m and "__MACOSX" not in name and m.group(1) in TASKS:
                text = z.read(name).decode("utf-8")
                rows[m.group(1)] = [json.loads(x) for x in text.splitlines() if x.strip()]
    return rows


def build_suite(
    output: Path,
    *,
    mirror: str | None = None,
    corpus: Path | None = None,
    pairs_per_task: int = PAIRS_PER_TASK,
) -> dict:
    """Fetch BLiMP and write <output>/<task>.jsonl + manifest.json; return the manifest."""
    if not 10 <= pairs_per_task <= 1000:
        raise ValueError(f"pairs_per_task={pairs_per_task}: must be in [10, 1000]")
    base = resolve_mirror(mirror)
    if base is None:
        got = fetch(OFFICIAL_URL, OFFICIAL_FILE, sha256=None, subdir="blimp")
    else:
        try:
            got = fetch_verified(
                base,
                MIRROR_FILE,
                mirror_sums(base),
                {Path(MIRROR_FILE).name: MIRROR_SHA256},
                "blimp",
            )
        except NotOnSource as e:
            raise FetchError(f"mirror {base} has no {MIRROR_FILE} ({e})") from None
    rows = _read_zip(got.path)
    missing = sorted(set(TASKS) - set(rows))
    if missing:
        raise FetchError(f"{got.url}: BLiMP archive lacks paradigms {missing}; is it BLiMP?")

    seen = None
    if corpus is not None and Path(corpus).is_file():
        seen = corpus_sentences(Path(corpus).read_text(encoding="utf-8"))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    tasks = {}
    for task, field in TASKS.items():
        items = rows[task]
        rng = random.Random(f"{SUITE_SEED}:{task}")  # one stream per task: stable selection
        chosen = sorted(rng.sample(range(len(items)), min(pairs_per_task, len(items))))
        kept, dropped = [], 0
        for i in chosen:
            r = items[i]
            if seen is not None and (
                _normalize(r["sentence_good"]) in seen or _normalize(r["sentence_bad"]) in seen
            ):
                dropped += 1
                continue
            kept.append(
                {
                    "good": r["sentence_good"],
                    "bad": r["sentence_bad"],
                    "field": field,
                    "term": r.get("linguistics_term", ""),
                    "pair_id": str(r.get("pairID")),
                }
            )
        atomic_write_text(
            output / f"{task}.jsonl", "".join(json.dumps(k, sort_keys=True) + "\n" for k in kept)
        )
        tasks[task] = {"field": field, "pairs": len(kept), "dropped_in_training_corpus": dropped}
    manifest = {
        "schema_version": 1,
        "suite": "SmallBench",
        "source": {
            "dataset": "BLiMP",
            "url": got.url,
            "sha256": got.sha256,
            "license": LICENSE,
            "citation": CITATION,
        },
        "seed": SUITE_SEED,
        "pairs_per_task": pairs_per_task,
        "held_out_check": {
            "corpus": str(corpus) if seen is not None else None,
            "checked": seen is not None,
            "dropped": sum(t["dropped_in_training_corpus"] for t in tasks.values()),
        },
        "tasks": tasks,
    }
    atomic_write_text(output / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_suite(suite_dir: Path) -> dict[str, list[dict]]:
    suite_dir = Path(suite_dir)
    manifest = suite_dir / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} is missing: run `scripts/download_smallbench.py "
            f"--output {suite_dir}` first"
        )
    tasks = json.loads(manifest.read_text())["tasks"]
    return {
        t: [json.loads(x) for x in (suite_dir / f"{t}.jsonl").read_text().splitlines()]
        for t in tasks
    }


@torch.no_grad()
def sentence_logprobs(
    model, sp, sentences: list[str], device: torch.device, batch_size: int = 64
) -> list[float]:
    """Summed log p(sentence tokens | BOS) for each sentence."""
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
            x[i, 0] = BOS_ID
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
    return out


def score(model, sp, suite: dict[str, list[dict]], device: torch.device) -> dict:
    """Per-task accuracy with standard error, per-field and macro averages."""
    tasks = {}
    for task, pairs in suite.items():
        if not pairs:
            continue
        lp = sentence_logprobs(
            model, sp, [p["good"] for p in pairs] + [p["bad"] for p in pairs], device
        )
        n = len(pairs)
        correct = sum(g > b for g, b in zip(lp[:n], lp[n:], strict=True))
        acc = correct / n
        tasks[task] = {
            "field": pairs[0]["field"],
            "n": n,
            "correct": correct,
            "acc": acc,
            "stderr": math.sqrt(acc * (1 - acc) / n),
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
        "macro_stderr": math.sqrt(sum(t["stderr"] ** 2 for t in tasks.values())) / k,
        "pairs": sum(t["n"] for t in tasks.values()),
    }
