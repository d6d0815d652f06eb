"""`pax bundle --sweep ID`: one tarball that rebuilds any result of a sweep. It holds the plan,
each run's resolved config, plan and metrics.json, the data manifests, the tokenizer models
with their hashes, the git SHA, seeds, the installed packages, device names, the ledger export
(results.csv, events.jsonl) and the best finalist's weights (safetensors, as a Hugging Face
folder), and a SHA-256 manifest of all of it. The layout is trainer.reproduce's."""

from __future__ import annotations

import io
import json
import platform
import shutil
import subprocess
import tarfile
import tempfile
import time
from importlib.metadata import distributions
from pathlib import Path

import yaml
from sqlalchemy.engine import Engine

from runner.ledger.events import events
from runner.ledger.results import results_for
from runner.ledger.sweeps import get_sweep, sweep_runs
from runner.release.model_card import best_run
from runner.release.report import pax_version
from runner.study.decisions import report_dir
from runner.study.results import ledger_rows, to_csv
from runner.study.stats import finalist_stats
from trainer.config import TrainConfig
from trainer.prep.fetch import sha256_file
from trainer.prep.smallbench import suite_dir
from trainer.reproduce import DATA, INDEX, MANIFEST, RUNS, TOKENIZERS, WEIGHTS, manifest_lines


class BundleError(ValueError):
    """The bundle cannot be made; the message says why and what to do."""


def git_state(repo: Path) -> dict:
    """{sha, dirty}: dirty is None when `repo` is not a git work tree (nothing to check)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"sha": None, "dirty": None}
    status = git("status", "--porcelain")
    return {"sha": sha.strip(), "dirty": bool(status and status.strip())}


def pip_freeze() -> str:
    """`pip freeze` of this interpreter, from package metadata (no pip subprocess)."""
    pins = {f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata["Name"]}
    return "\n".join(sorted(pins, key=str.lower)) + "\n"


def _copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise BundleError(
            f"{src} is missing: the bundle needs the files the runs used; run this where the "
            "sweep ran (or restore its data folder)"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _data_files(configs: list[TrainConfig], stage: Path) -> dict:
    """Tokenizers (per vocab size), the WikiText-2 manifest and SmallBench's suite hashes."""
    data_dir = smallbench = None
    vocabs = {}
    for cfg in configs:
        tok = cfg.tokenized_path()
        if cfg.model.vocab_size not in vocabs:
            dst = stage / TOKENIZERS / f"sp{cfg.model.vocab_size}"
            _copy(tok / "manifest.json", dst / "manifest.json")
            _copy(tok / "tokenizer.model", dst / "tokenizer.model")
            manifest = json.loads((tok / "manifest.json").read_text())
            vocabs[cfg.model.vocab_size] = manifest["tokenizer_sha256"]
            data_dir = data_dir or Path(manifest["data_dir"])
        if cfg.eval.smallbench and smallbench is None:
            smallbench = suite_dir(Path(cfg.eval.smallbench_dir), cfg.eval.smallbench_tasks)
    if data_dir is not None:
        _copy(
            data_dir / "DATASET_MANIFEST.json",
            stage / DATA / "wikitext-2" / "DATASET_MANIFEST.json",
        )
    suite = {}
    if smallbench is not None and (smallbench / "manifest.json").is_file():
        _copy(smallbench / "manifest.json", stage / DATA / "smallbench" / "manifest.json")
        suite = {p.name: sha256_file(p) for p in sorted(smallbench.glob("*.jsonl"))}
    return {"tokenizers_sha256": {f"sp{v}": h for v, h in sorted(vocabs.items())},
            "smallbench": suite}  # fmt: skip


def _add_tree(tar: tarfile.TarFile, root: Path, arc_root: str) -> None:
    """Files in sorted order with fixed owner and dates: the archive depends on content only."""
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        info = tarfile.TarInfo(f"{arc_root}/{p.relative_to(root).as_posix()}")
        data = p.read_bytes()
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))


def write_bundle(
    engine: Engine,
    sweep_id: int,
    out: Path | None = None,
    *,
    allow_dirty: bool = False,
    repo: Path = Path("."),
    now: float | None = None,
) -> dict:
    """Write the bundle (default: <report folder>/pax-bundle-sweep-NNNN.tar.gz); returns its
    path, SHA-256, size and what it holds."""
    from trainer.export import export_hf

    sw = get_sweep(engine, sweep_id=sweep_id)
    git = git_state(repo)
    if git["dirty"] is None and not allow_dirty:
        raise BundleError(
            f"{Path(repo).resolve()} is not a git work tree, so the code's version cannot be "
            "recorded; run from the checkout that ran the sweep, or pass --allow-dirty"
        )
    if git["dirty"] and not allow_dirty:
        raise BundleError(
            "the work tree has uncommitted changes, so the git SHA would not name the code; "
            "commit them, or pass --allow-dirty (recorded in the bundle)"
        )
    runs = sweep_runs(engine, sweep_id=sweep_id)
    results = results_for(engine, run_ids=[r.id for r in runs])
    name = f"pax-bundle-sweep-{sweep_id:04d}"
    out = Path(out) if out else report_dir(sw) / f"{name}.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / name
        entries, configs = [], []
        for r in runs:
            d = Path(r.run_dir).name if r.run_dir else f"{r.id:06d}-{r.name}"
            cfg = json.loads(r.spec_json)
            configs.append(TrainConfig.model_validate(cfg))
            (stage / RUNS / d).mkdir(parents=True)
            (stage / RUNS / d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
            if r.plan_json:
                (stage / RUNS / d / "plan.json").write_text(r.plan_json)
            metrics = results.get(r.id)
            if metrics is not None:
                (stage / RUNS / d / "metrics.json").write_text(json.dumps(metrics, indent=2))
            prov = (metrics or {}).get("provenance") or {}
            entries.append(
                {"id": r.id, "name": r.name, "dir": d, "cell": r.cell, "phase": r.phase,
                 "seed": r.seed, "status": r.status, "tokens_seen": r.tokens_seen,
                 "git_sha": prov.get("git_sha"), "device": prov.get("device"),
                 "device_name": prov.get("device_name"), "has_metrics": metrics is not None}
            )  # fmt: skip
        data = _data_files(configs, stage)
        (stage / "plan.yaml").write_text(yaml.safe_dump(json.loads(sw.spec_json or "{}")))
        ledger = stage / "ledger"
        ledger.mkdir()
        rows = ledger_rows(engine, sweep_id)
        (ledger / "results.csv").write_text(to_csv(rows))
        history = events(engine, sweep_id=sweep_id)
        (ledger / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in history))
        (stage / "env").mkdir()
        (stage / "env" / "pip-freeze.txt").write_text(pip_freeze())
        weights = _best_weights(rows, entries, stage, export_hf)
        index = {
            "format": 1,
            "sweep": {"id": sw.id, "name": sw.name, "status": sw.status, "phase": sw.phase},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now or time.time())),
            "pax": pax_version(),
            "git": {**git, "allow_dirty": allow_dirty},
            "runs_git_sha": sorted({e["git_sha"] for e in entries if e["git_sha"]}),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "devices": sorted(
                {f"{e['device']} ({e['device_name']})" for e in entries if e["device"]}
            ),  # fmt: skip
            "seeds": sorted({e["seed"] for e in entries}),
            "runs": entries,
            "best_finalist": weights,
            **data,
        }
        (stage / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        (stage / MANIFEST).write_text(manifest_lines(stage))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_name(f".{out.name}.partial")
        with tarfile.open(tmp_out, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            _add_tree(tar, stage, name)
        tmp_out.replace(out)
        files = sum(1 for p in stage.rglob("*") if p.is_file())
    return {
        "bundle": str(out),
        "sha256": sha256_file(out),
        "bytes": out.stat().st_size,
        "files": files,
        "runs": len(entries),
        "best_finalist": weights,
        "git": {**git, "allow_dirty": allow_dirty},
    }


def _best_weights(rows: list[dict], entries: list[dict], stage: Path, export_hf) -> dict:
    """The best finalist's best seed as a Hugging Face folder under weights/ (None when no
    finalist finished, or its run directory is not on this machine)."""
    stats = finalist_stats(rows)
    if not stats:
        return {"run": None, "why": "no finalist finished"}
    runs = [r for r in rows if r["phase"] == "finalists" and r["status"] == "succeeded"
            and r["cell"] == stats[0]["cell"]]  # fmt: skip
    best = best_run(runs)
    d = next(e["dir"] for e in entries if e["id"] == best["run_id"])
    if not best["run_dir"] or not (Path(best["run_dir"]) / "checkpoints").is_dir():
        return {"run": d, "cell": best["cell"], "weights": None,
                "why": f"{best['run_dir']} is not on this machine"}  # fmt: skip
    export_hf(Path(best["run_dir"]), stage / WEIGHTS / d)
    return {"run": d, "cell": best["cell"], "weights": f"{WEIGHTS}/{d}/model.safetensors"}
