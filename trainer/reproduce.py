"""`pax reproduce BUNDLE --run NAME`: retrain one run of a reproduction bundle from the bundle
alone, with data fetched again and checked against the bundle's hashes, then compare its
metrics with the bundle's. On CPU the deterministic fields must be equal bit for bit.

The bundle's layout (written by runner.release.bundle) is defined here, one floor down, so the
writer and the reader share it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
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


# What a bundle may unpack to: a real one is a few thousand small files and one model's
# weights. Checked from the tar's headers before anything is written, and again as bytes flow.
MAX_MEMBERS = 10_000
MAX_BYTES = int(os.environ.get("PAX_BUNDLE_MAX_BYTES", 2**30))
SHA256 = re.compile(r"^[0-9a-f]{64}$")
RUN_DIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")  # a run folder's own name


class ReproduceError(ValueError):
    """The bundle cannot rebuild that run; the message says why and what to do."""


def manifest_lines(root: Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    return "".join(f"{sha256_file(p)}  {p.relative_to(root).as_posix()}\n" for p in files)


def unpack(
    bundle: Path, dest: Path, *, max_members: int = MAX_MEMBERS, max_bytes: int = MAX_BYTES
) -> Path:
    """Extract the bundle into `dest` and check every file against its manifest; returns the
    bundle's root folder. Only plain files and folders, each under `dest`: a link, a device,
    an absolute or climbing path, too many members or too many bytes (from the headers first,
    then counted as they are written) is a refusal, and a refused bundle leaves nothing."""
    bundle = Path(bundle)
    if not bundle.is_file():
        raise ReproduceError(f"{bundle}: no such bundle; make one with `pax bundle --sweep ID`")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    _empty(dest)  # a fresh unpack: nothing of an earlier one is trusted
    try:
        _extract(bundle, dest, max_members, max_bytes)
        return _checked_root(bundle, dest)
    except BaseException:
        _empty(dest)  # nothing of a refused bundle stays on disk
        raise


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _extract(bundle: Path, dest: Path, max_members: int, max_bytes: int) -> None:
    top = dest.resolve()
    try:
        with tarfile.open(bundle) as tar:
            members = []
            for m in tar:  # headers only: no member's data is read here
                members.append(m)
                if len(members) > max_members:
                    raise ReproduceError(
                        f"{bundle}: more than {max_members:,} members; a pax bundle holds far "
                        "fewer (refused before extracting)"
                    )
            declared = sum(m.size for m in members if m.isfile())
            if declared > max_bytes:
                raise ReproduceError(
                    f"{bundle}: unpacks to {declared:,} bytes, over the {max_bytes:,} allowed "
                    "(PAX_BUNDLE_MAX_BYTES; refused before extracting)"
                )
            for m in members:
                target = _member_path(bundle, m, top)
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
            budget = max_bytes
            for m in members:
                if not m.isfile():
                    continue
                target = _member_path(bundle, m, top)
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                with open(target, "xb") as out:
                    while chunk := src.read(1 << 20):
                        budget -= len(chunk)
                        if budget < 0:
                            raise ReproduceError(
                                f"{bundle}: more data than its headers declare; refused"
                            )
                        out.write(chunk)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ReproduceError(f"{bundle}: not a readable bundle ({e})") from None


def _member_path(bundle: Path, m: tarfile.TarInfo, top: Path) -> Path:
    """Where a member goes: a plain file or folder, under `top`, or a refusal."""
    if not (m.isfile() or m.isdir()) or m.issparse():
        kind = "a link" if (m.issym() or m.islnk()) else "not a plain file or folder"
        raise ReproduceError(f"{bundle}: member {m.name!r} is {kind}; a pax bundle holds none")
    name = m.name
    parts = Path(name).parts
    if "\0" in name or name.startswith(("/", "\\")) or ".." in parts or not parts:
        raise ReproduceError(f"{bundle}: member {name!r} would be written outside the work folder")
    target = (top / name).resolve()
    if not target.is_relative_to(top):
        raise ReproduceError(f"{bundle}: member {name!r} would be written outside the work folder")
    return target


def _checked_root(bundle: Path, dest: Path) -> Path:
    roots = [p for p in dest.iterdir() if (p / MANIFEST).is_file()]
    if len(roots) != 1:
        raise ReproduceError(f"{bundle}: holds no {MANIFEST}; is it a pax bundle?")
    root = roots[0]
    want = {}
    for line in (root / MANIFEST).read_text().splitlines():
        digest, _, rel = line.partition("  ")
        if not SHA256.match(digest) or not rel:
            raise ReproduceError(f"{bundle}: its {MANIFEST} has a line without a hash: {line!r}")
        want[rel] = digest
    got = {ln.split("  ", 1)[1]: ln.split("  ", 1)[0] for ln in manifest_lines(root).splitlines()}
    bad = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    if bad:
        raise ReproduceError(f"{bundle}: files differ from its manifest: {', '.join(bad[:5])}")
    return root


def under(folder: Path, name: str, what: str) -> Path:
    """folder/name for a run folder's name taken from a bundle: one plain path component that
    stays under `folder`, or a refusal."""
    if not isinstance(name, str) or not RUN_DIR.match(name) or name in (".", ".."):
        raise ReproduceError(f"{what} {name!r} is not a run folder's name; refusing the bundle")
    path = (folder / name).resolve()
    if path.parent != folder.resolve():
        raise ReproduceError(f"{what} {name!r} leaves {folder}; refusing the bundle")
    return path


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
    """`got` must be the bundle's hash of it; a bundle without a hash for it is refused: an
    unchecked input is not a reproduction."""
    if not isinstance(want, str) or not SHA256.match(want):
        raise ReproduceError(
            f"{what}: the bundle gives no SHA-256 for it ({want!r}), so it cannot be checked; "
            "make the bundle again with `pax bundle`"
        )
    if want != got:
        raise ReproduceError(
            f"{what}: SHA-256 {got[:12]}... differs from the bundle's {want[:12]}...; the data "
            "source (or the tokenizer library) is not the one the bundle was made with"
        )


def rebuild_data(root: Path, index: dict, cfg: dict, work: Path, mirror: str | None) -> dict:
    """Fetch WikiText-2 (and SmallBench), retrain the tokenizer, and check each against the
    bundle's hashes; returns the config's data paths pointed at `work`."""
    from trainer.prep.smallbench import build_suite, suite_dir
    from trainer.prep.tokenizer import build_tokenizer
    from trainer.prep.wikitext import download_wikitext

    data_manifest = json.loads((root / DATA / "wikitext-2" / "DATASET_MANIFEST.json").read_text())
    got = download_wikitext(work / "data" / "wikitext-2", mirror=mirror)
    for split, st in data_manifest["splits"].items():
        fetched = got["splits"].get(split) or {}
        _check(f"WikiText-2 {split} split", st.get("sha256"), fetched.get("sha256", "missing"))
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
        made = built["splits"].get(split) or {}
        _check(f"token file sp{vocab}/{split}", st.get("sha256"), made.get("sha256", "missing"))
    paths = {"data": {"tokenized_dir": str(tok_root)}}
    if cfg.get("eval", {}).get("smallbench", True) and index.get("smallbench"):
        suite = work / "data" / "smallbench"
        tasks = cfg.get("eval", {}).get("smallbench_tasks", "smallbench")
        built = build_suite(
            suite, mirror=mirror, corpus=work / "data" / "wikitext-2" / "train.txt", tasks=tasks
        )
        folder = suite_dir(suite, built["selection"])
        for name, digest in index["smallbench"].items():
            _check(f"SmallBench {name}", digest, sha256_file(under(folder, name, "smallbench")))
        paths["eval"] = {"smallbench_dir": str(suite)}
    return paths


def reproduce(bundle: Path, run: str, work: Path, *, mirror: str | None = None) -> dict:
    """Retrain `run` from `bundle` in `work`; returns the comparison (`equal` and the fields
    that differ)."""
    from trainer.config import validate
    from trainer.train import train

    work = Path(work)
    root = unpack(bundle, work / "bundle")
    try:
        entry, cfg, bundled, out_dir = _prepare(root, run, work, mirror)
    except ReproduceError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as e:  # a bundle's documents
        raise ReproduceError(
            f"{bundle}: its documents are not a pax bundle's ({e.__class__.__name__}: {e})"
        ) from None
    code, rebuilt = train(validate(cfg), out_dir, progress=False)
    diff = compare(bundled, rebuilt)
    return {
        "run": entry["dir"],
        "exit_code": code,
        "equal": not diff,
        "compared": list(EXACT),
        "differs": diff,
        "rebuilt_dir": str(out_dir),
        "bundle_sha256": hashlib.sha256(Path(bundle).read_bytes()).hexdigest(),
    }


def _prepare(root: Path, run: str, work: Path, mirror: str | None):
    """(the run's index entry, its config pointed at rebuilt data, its bundled metrics, the
    folder it trains in again), every path checked to stay where it belongs."""
    index = json.loads((root / INDEX).read_text())
    entry = find_run(index, run)
    if entry["status"] != "succeeded":
        raise ReproduceError(
            f"--run {entry['dir']}: it ended {entry['status']} (stopped from outside at "
            f"{entry['tokens_seen']:,} tokens), so its metrics are not its config's alone; "
            "choose a run that succeeded"
        )
    run_dir = under(root / RUNS, entry["dir"], "runs[].dir")
    out_dir = under(work / "runs", entry["dir"], "runs[].dir")
    cfg = json.loads((run_dir / "config.json").read_text())
    bundled = json.loads((run_dir / "metrics.json").read_text())
    paths = rebuild_data(root, index, cfg, work, mirror)
    for section, values in paths.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return entry, cfg, bundled, out_dir
