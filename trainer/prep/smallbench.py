"""SmallBench, the suite: a fixed, held-out sample of BLiMP minimal pairs (the scorer is
`trainer.evaluation.smallbench`).

BLiMP (Warstadt et al., TACL 2020, CC BY 4.0): 67 paradigms x 1,000 pairs of a grammatical and
an ungrammatical sentence. SmallBench takes a deterministic sample of paradigms covering
morphology, syntax and semantics, and drops (and counts) every pair whose sentence occurs in the
training corpus.
"""

from __future__ import annotations

import json
import random
import re
import zipfile
from pathlib import Path

from trainer.prep.fetch import (
    FetchError,
    NotOnSource,
    atomic_write_text,
    fetch,
    fetch_verified,
    mirror_sums,
    resolve_mirror,
)

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
# "smallbench": the 9 paradigms above, the study's suite; "all": every paradigm of the archive
# (67), for a fuller read at 7.6x the scoring cost (bench/smallbench_cost.py). It lives in
# <root>/all, beside the default.
SELECTIONS = ("smallbench", "all")


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


def suite_dir(root: Path, tasks: str = "smallbench") -> Path:
    """The folder of a selection's suite under the SmallBench root."""
    if tasks not in SELECTIONS:
        raise ValueError(f"tasks={tasks!r}: must be one of {', '.join(SELECTIONS)}")
    return Path(root) if tasks == "smallbench" else Path(root) / "all"


def _read_zip(path: Path, wanted=None) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            # data/<paradigm>.jsonl, at any depth (the GitHub archive adds blimp-master/);
            # macOS resource forks (__MACOSX/._x.jsonl) are not data
            m = re.search(r"(?:^|/)data/([A-Za-z0-9_]+)\.jsonl$", name)
            if m and "__MACOSX" not in name and (wanted is None or m.group(1) in wanted):
                text = z.read(name).decode("utf-8")
                rows[m.group(1)] = [json.loads(x) for x in text.splitlines() if x.strip()]
    return rows


def build_suite(
    output: Path,
    *,
    mirror: str | None = None,
    corpus: Path | None = None,
    pairs_per_task: int = PAIRS_PER_TASK,
    tasks: str = "smallbench",
) -> dict:
    """Fetch BLiMP and write <suite>/<task>.jsonl + manifest.json; return the manifest.
    `tasks`: "smallbench" (the 9 of TASKS, in `output`) or "all" (every paradigm in the
    archive, in `output`/all)."""
    if not 10 <= pairs_per_task <= 1000:
        raise ValueError(f"pairs_per_task={pairs_per_task}: must be in [10, 1000]")
    output = suite_dir(output, tasks)  # an unknown selection: ValueError before any download
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
    rows = _read_zip(got.path, wanted=None if tasks == "all" else set(TASKS))
    missing = sorted(set(TASKS) - set(rows))
    if missing:
        raise FetchError(f"{got.url}: BLiMP archive lacks paradigms {missing}; is it BLiMP?")
    # BLiMP's own field for the paradigms outside SmallBench's choice (one paradigm spells
    # syntax_semantics "syntax/semantics")
    fields = {
        t: TASKS.get(t) or (rows[t][0].get("field", "") if rows[t] else "").replace("/", "_")
        for t in rows
    }

    seen = None
    if corpus is not None and Path(corpus).is_file():
        seen = corpus_sentences(Path(corpus).read_text(encoding="utf-8"))
    output.mkdir(parents=True, exist_ok=True)
    chosen_tasks = {}
    for task, field in sorted(fields.items()) if tasks == "all" else TASKS.items():
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
        chosen_tasks[task] = {
            "field": field,
            "pairs": len(kept),
            "dropped_in_training_corpus": dropped,
        }
    manifest = {
        "schema_version": 1,
        "suite": "SmallBench" if tasks == "smallbench" else f"BLiMP, all {len(rows)} paradigms",
        "selection": tasks,
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
            "dropped": sum(t["dropped_in_training_corpus"] for t in chosen_tasks.values()),
        },
        "tasks": chosen_tasks,
    }
    atomic_write_text(output / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_suite(root: Path, tasks: str = "smallbench") -> dict[str, list[dict]]:
    """The suite of a selection under the SmallBench root, {task: pairs}."""
    folder = suite_dir(root, tasks)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        flag = "" if tasks == "smallbench" else f" --tasks {tasks}"
        raise FileNotFoundError(
            f"{manifest} is missing: run `scripts/download_smallbench.py{flag} "
            f"--output {root}` first"
        )
    names = json.loads(manifest.read_text())["tasks"]
    return {
        t: [json.loads(x) for x in (folder / f"{t}.jsonl").read_text().splitlines()] for t in names
    }
