"""WikiText-2 (Merity et al. 2016, CC BY-SA 3.0): download, verify, write train/valid/test.txt.

Official source: the Hugging Face hub copy (dataset Salesforce/wikitext), one parquet file per
split, verified against the hub's own LFS sha256. A mirror (folder or URL) may hold the same
parquet layout, the classic `wikitext-2/wiki.{train,valid,test}.tokens`, or only the official
validation and test splits (`wikitext-2-sample/`): then a clearly labelled *sample* is built
(train = validation split; dev/test = the two halves of the test split, cut at an article).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

from trainer.prep.fetch import (
    MIRROR_HINT,
    Fetched,
    FetchError,
    NotOnSource,
    atomic_write_text,
    fetch_verified,
    mirror_sums,
    resolve_mirror,
    sha256_file,
)

HF_BASE = "https://huggingface.co/datasets/Salesforce/wikitext/resolve/{revision}"
HF_TREE = "https://huggingface.co/api/datasets/Salesforce/wikitext/tree/{revision}/{folder}"
LICENSE = "CC BY-SA 3.0"
CITATION = "Merity et al., Pointer Sentinel Mixture Models, 2016 (WikiText-2)"
SPLITS = ("train", "valid", "test")
HF_SPLIT = {"train": "train", "valid": "validation", "test": "test"}
VARIANTS = {
    "v1": ("wikitext-2-v1", "wikitext-2", "tokens"),
    "raw": ("wikitext-2-raw-v1", "wikitext-2-raw", "raw"),
}
# The official text files (also what ../shared/data holds), by sha256.
KNOWN_SHA256 = {
    "wiki.valid.tokens": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "wiki.test.tokens": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}
MANIFEST = "DATASET_MANIFEST.json"
SCHEMA_VERSION = 1


@dataclass
class SplitText:
    text: str
    sources: list[Fetched]


def split_stats(text: str) -> dict:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    words = sum(len(line.split()) for line in lines)
    return {
        "lines": len(lines),
        "words": words,
        "word_level_tokens": words + len(lines),
        "bytes": len(text.encode("utf-8")),
    }


def parquet_to_text(path: Path) -> str:
    """One parquet row per line of the original file; the hub stores blank lines (' ') as ''."""
    import pyarrow.parquet as pq

    rows = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    return "".join((row.rstrip("\n") if row else " ") + "\n" for row in rows)


def _hub_sha256(revision: str, folder: str) -> dict[str, str]:
    url = HF_TREE.format(revision=revision, folder=folder)
    try:
        r = requests.get(url, timeout=30)
        r.raise_for_status()
    except requests.RequestException as e:
        raise FetchError(
            f"cannot read file hashes from {url} ({type(e).__name__}). {MIRROR_HINT}"
        ) from e
    return {item["path"]: item["lfs"]["oid"] for item in r.json() if item.get("lfs")}


def _halves_at_article(text: str) -> tuple[str, str]:
    """Cut at the top-level heading (' = Title = ') nearest the middle line."""
    lines = text.split("\n")[:-1]
    mid = len(lines) // 2
    heads = [
        i for i, line in enumerate(lines) if line.startswith(" = ") and not line.startswith(" = = ")
    ]
    cut = min(heads, key=lambda i: abs(i - mid)) if heads else mid
    # keep the blank line that precedes a heading with the article it introduces
    if cut > 0 and lines[cut - 1].strip() == "":
        cut -= 1
    return "\n".join(lines[:cut]) + "\n", "\n".join(lines[cut:]) + "\n"


def _from_base(base: str, variant: str, sums: dict[str, str]) -> tuple[dict, bool, str]:
    """Try the parquet layout, then the full text layout, then the sample; return splits."""
    hub_dir, text_dir, ext = VARIANTS[variant]
    sub = f"wikitext-{variant}"
    try:
        out = {}
        for split in SPLITS:
            rel = f"{hub_dir}/{HF_SPLIT[split]}-00000-of-00001.parquet"
            f = fetch_verified(base, rel, sums, KNOWN_SHA256, sub)
            out[split] = SplitText(parquet_to_text(f.path), [f])
        return out, False, "parquet"
    except NotOnSource:
        pass
    try:
        out = {}
        for split in SPLITS:
            rel = f"{text_dir}/wiki.{split}.{ext}"
            f = fetch_verified(base, rel, sums, KNOWN_SHA256, sub)
            out[split] = SplitText(f.path.read_text(encoding="utf-8"), [f])
        return out, False, "text"
    except NotOnSource:
        pass
    if variant != "v1":
        raise FetchError(
            f"mirror {base} holds neither {hub_dir}/*.parquet nor {text_dir}/wiki.*."
            f"{ext}; the sample layout exists only for the v1 variant."
        )
    try:
        valid = fetch_verified(base, "wikitext-2-sample/wiki.valid.tokens", sums, KNOWN_SHA256, sub)
        test = fetch_verified(base, "wikitext-2-sample/wiki.test.tokens", sums, KNOWN_SHA256, sub)
    except NotOnSource as e:
        raise FetchError(
            f"mirror {base} holds no WikiText-2 layout this tool knows ({e}). "
            f"Expected {hub_dir}/<split>-00000-of-00001.parquet, "
            f"{text_dir}/wiki.<split>.{ext} or wikitext-2-sample/wiki.{{valid,test}}."
            "tokens"
        ) from None
    dev, held = _halves_at_article(test.path.read_text(encoding="utf-8"))
    return (
        {
            "train": SplitText(valid.path.read_text(encoding="utf-8"), [valid]),
            "valid": SplitText(dev, [test]),
            "test": SplitText(held, [test]),
        },
        True,
        "sample",
    )


def download_wikitext(
    output: Path,
    *,
    mirror: str | None = None,
    variant: str = "v1",
    revision: str = "main",
    force: bool = False,
) -> dict:
    """Write train/valid/test.txt and DATASET_MANIFEST.json into `output`; return the manifest."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: must be one of {sorted(VARIANTS)}")
    output = Path(output)
    base = resolve_mirror(mirror)
    if base is None:
        # The tree API lists paths relative to the repository root, as `_from_base` asks for them.
        sums = _hub_sha256(revision, VARIANTS[variant][0])
        splits, sample, layout = _from_base(HF_BASE.format(revision=revision), variant, sums)
        origin = "official"
    else:
        splits, sample, layout = _from_base(base, variant, mirror_sums(base))
        origin = "mirror"

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "dataset": "WikiText-2",
        "variant": variant,
        "license": LICENSE,
        "citation": CITATION,
        "origin": origin,
        "layout": layout,
        "sample": sample,
        "note": (
            "SAMPLE: the official train split was not available; train = official validation "
            "split, valid/test = the two halves of the official test split (cut at an "
            "article). Results made from it are NOT WikiText-2 results."
        )
        if sample
        else "official WikiText-2 splits",
        "sources": {},
        "splits": {},
    }
    for split, st in splits.items():
        manifest["sources"][split] = [{"url": f.url, "sha256": f.sha256} for f in st.sources]
        stats = split_stats(st.text)
        stats["sha256"] = hashlib.sha256(st.text.encode("utf-8")).hexdigest()
        manifest["splits"][split] = stats

    existing = output / MANIFEST
    if not force and existing.is_file():
        old = json.loads(existing.read_text())
        if old.get("splits") == manifest["splits"] and all(
            (output / f"{s}.txt").is_file()
            and sha256_file(output / f"{s}.txt") == old["splits"][s]["sha256"]
            for s in SPLITS
        ):
            return old

    output.mkdir(parents=True, exist_ok=True)
    # Write every file under a temporary name first; a crash leaves the old set or nothing.
    with tempfile.TemporaryDirectory(dir=output, prefix=".partial-") as tmp:
        for split, st in splits.items():
            (Path(tmp) / f"{split}.txt").write_text(st.text, encoding="utf-8")
        for split in splits:
            (Path(tmp) / f"{split}.txt").replace(output / f"{split}.txt")
    atomic_write_text(existing, json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_manifest(data_dir: Path) -> dict:
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run `scripts/download_wikitext.py --output "
            f"{data_dir}` (or `pax data wikitext`) first"
        )
    return json.loads(path.read_text())
