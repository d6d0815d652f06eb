"""`pax reproduce BUNDLE --run NAME`: retrain one run of a reproduction bundle from the bundle
alone, with data fetched again and checked against the bundle's hashes, then compare its
metrics with the bundle's. On CPU the deterministic fields must be equal bit for bit.

The bundle's layout (written by runner.release.bundle) is defined here, one floor down, so the
writer and the reader share it."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

from trainer.prep.fetch import sha256_file

MANIFEST = "MANIFEST.sha256"  # "<sha256>  <path>" for every other file of the bundle
INDEX = "bundle.json"  # what is in it: sweep, git, environment, runs, data and tokenizers
RUNS = "runs"  # runs/<run dir name>/{config.json, plan.json, metrics.json}
DATA = "data"  # data/wikitext-2/DATASET_MANIFEST.json, data/smallbench/manifest.json
TOKENIZERS = "tokenizers"  # tokenizers/sp<V>/{tokenizer.model, manifest.json}
WEIGHTS = "weights"  # weights/<run dir name>/: the best finalist as a Hugging Face folder

# the fields of metrics.json that the same config and seed reproduce exactly on CPU (times,
# speeds, latencies, paths and dates are the machine's, not the run's)
EXACT = (
    "params",
    "plan",
    "training.steps",
    "training.tokens_seen",
    "training.train_loss",
    "dev_curve",
    "dev",
    "test",
    "smallbench.tasks",
    "smallbench.macro_acc",
    "final_model",
)


class ReproduceError(ValueError):
    """The bundle cannot rebuild that run; the message says why and what to do."""


def manifest_lines(root: Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    return "".join(f"{sha256_file(p)}  {p.relative_to(root).as_posix()}\n" for p in files)


def unpack(bundle: Path, dest: Path) -> Path:
    """Extract (no links, no paths outside `dest`) and check every file against the manifest;
    returns the bundle's root folder."""
    bundle = Path(bundle)
    if not bundle.is_file():
        raise ReproduceError(f"{bundle}: no such bundle; make one with `pax bundle --sweep ID`")
    try:
        with tarfile.open(bundle) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise ReproduceError(f"{bundle}: not a readable bundle ({e})") from None
    roots = [p for p in Path(dest).iterdir() if (p / MANIFEST).is_file()]
    if len(roots) != 1:
        raise ReproduceError(f"{bundle}: holds no {MANIFEST}; is it a pax bundle?")
    root = roots[0]
    want = {}
    for line in (root / MANIFEST).read_text().splitlines():
        digest, rel = line.split("  ", 1)
        want[rel] = digest
    got = {ln.split("  ", 1)[1]: ln.split("  ", 1)[0] for ln in manifest_lines(root).splitlines()}
    bad = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    if bad:
        raise ReproduceError(f"{bundle}: files differ from its manifest: {', '.join(bad[:5])}")
    return root


def find_run(index: dict, key: str) -> dict:
    """A run by its directory name (000015-emb45), its ledger id (15) or a unique name."""
    runs = index["runs"]
    hits = [r for r in runs if key in (r["dir"], str(r["id"]))] or [
        r for r in runs if r["name"] == key
    ]
    if len(hits) == 1:
        return hits[0]
    choices = ", ".join(r["dir"] for r in runs)
    if hits:
        raise ReproduceError(f"--run {key}: {len(hits)} runs have that name; give one of {choices}")
    raise ReproduceError(f"--run {key}: not in this bundle; choose one of {choices}")


def _get(doc: dict, path: str):
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def compare(bundled: dict, rebuilt: dict) -> dict[str, dict]:
    """{field: {bundle, rebuilt}} for every EXACT field that differs (JSON values, so floats
    compare as the bits the trainer wrote)."""
    out = {}
    for path in EXACT:
        a, b = _get(bundled, path), _get(rebuilt, path)
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            out[path] = {"bundle": a, "rebuilt": b}
    return out


def _check(what: str, want: str | None, got: str) -> None:
    if want is not None and want != got:
        raise ReproduceError(
            f"{what}: SHA-256 {got[:12]}... differs from the bundle's {want[:12]}...; the data "
            "source (or the tokenizer library) is not the one the bundle was made with"
        )


def rebuild_data(root: Path, index: dict, cfg: dict, work: Path, mirror: str | None) -> dict:
    """Fetch WikiText-2 (and SmallBench), retrain the tokenizer, and check each against the
    bundle's hashes; returns the config's data paths pointed at `work`."""
    from trainer.prep.smallbench import build_suite
    from trainer.prep.tokenizer import build_tokenizer
    from trainer.prep.wikitext import download_wikitext

    data_manifest = json.loads((root / DATA / "wikitext-2" / "DATASET_MANIFEST.json").read_text())
    got = download_wikitext(work / "data" / "wikitext-2", mirror=mirror)
    for split, st in data_manifest["splits"].items():
        _check(f"WikiText-2 {split} split", st["sha256"], got["splits"][split]["sha256"])
    vocab = cfg["model"]["vocab_size"]
    tok_manifest = json.loads((root / TOKENIZERS / f"sp{vocab}" / "manifest.json").read_text())
    args = tok_manifest["args"]
    tok_root = work / "data" / "lm_tokenized"
    built = build_tokenizer(
        work / "data" / "wikitext-2",
        vocab,
        tok_root,
        model_type=args["model_type"],
        character_coverage=args["character_coverage"],
        reports_dir=None,
    )
    _check(f"tokenizer sp{vocab}", tok_manifest["tokenizer_sha256"], built["tokenizer_sha256"])
    for split, st in tok_manifest["splits"].items():
        _check(f"token file sp{vocab}/{split}", st["sha256"], built["splits"][split]["sha256"])
    paths = {"data": {"tokenized_dir": str(tok_root)}}
    if cfg.get("eval", {}).get("smallbench", True) and index.get("smallbench"):
        suite = work / "data" / "smallbench"
        build_suite(suite, mirror=mirror, corpus=work / "data" / "wikitext-2" / "train.txt")
        for name, digest in index["smallbench"].items():
            _check(f"SmallBench {name}", digest, sha256_file(suite / name))
        paths["eval"] = {"smallbench_dir": str(suite)}
    return paths


def reproduce(bundle: Path, run: str, work: Path, *, mirror: str | None = None) -> dict:
    """Retrain `run` from `bundle` in `work`; returns the comparison (`equal` and the fields
    that differ)."""
    from trainer.config import validate
    from trainer.train import train

    work = Path(work)
    root = unpack(bundle, work / "bundle")
    index = json.loads((root / INDEX).read_text())
    entry = find_run(index, run)
    if entry["status"] != "succeeded":
        raise ReproduceError(
            f"--run {entry['dir']}: it ended {entry['status']} (stopped from outside at "
            f"{entry['tokens_seen']:,} tokens), so its metrics are not its config's alone; "
            "choose a run that succeeded"
        )
    run_dir = root / RUNS / entry["dir"]
    cfg = json.loads((run_dir / "config.json").read_text())
    bundled = json.loads((run_dir / "metrics.json").read_text())
    paths = rebuild_data(root, index, cfg, work, mirror)
    for section, values in paths.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    code, rebuilt = train(validate(cfg), work / "runs" / entry["dir"], progress=False)
    diff = compare(bundled, rebuilt)
    return {
        "run": entry["dir"],
        "exit_code": code,
        "equal": not diff,
        "compared": list(EXACT),
        "differs": diff,
        "rebuilt_dir": str(work / "runs" / entry["dir"]),
        "bundle_sha256": hashlib.sha256(Path(bundle).read_bytes()).hexdigest(),
    }
