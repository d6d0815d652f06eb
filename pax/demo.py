"""`make demo` / `pax demo`: the whole study on a tiny budget, on this machine, end to end."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from pax.client import Client, ServiceError, start_service

console = Console(stderr=True, soft_wrap=True)
DEMO_DB = Path("var/demo/pax.db")


def prepare_data(vocab_sizes: list[int]) -> None:
    """WikiText-2 (official source or $PAX_DATA_MIRROR), SmallBench, one tokenizer per V."""
    from trainer.prep.smallbench import build_suite
    from trainer.prep.tokenizer import build_tokenizer
    from trainer.prep.wikitext import download_wikitext

    t0 = time.time()
    m = download_wikitext(Path("data/wikitext-2"))
    console.print(f"data: WikiText-2 in data/wikitext-2 ({'SAMPLE' if m['sample'] else 'full'})")
    build_suite(Path("data/smallbench"), corpus=Path("data/wikitext-2/train.txt"))
    console.print("data: SmallBench in data/smallbench")
    for v in sorted(set(vocab_sizes)):
        build_tokenizer(Path("data/wikitext-2"), v, Path("data/lm_tokenized"))
        console.print(f"tokenizer: V={v} in data/lm_tokenized/sp{v}")
    console.print(f"data ready in {time.time() - t0:.0f}s")


def demo_service(port: int, concurrency: int, token: str) -> subprocess.Popen:
    DEMO_DB.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "PAX_DB": str(DEMO_DB),
        "PAX_CONCURRENCY": str(concurrency),
        "PAX_ADMIN_TOKEN": token,
        "PAX_RUNS_ROOT": "var/demo/runs",
        "PAX_REPORTS_ROOT": "reports/demo",
    }
    return start_service(env, port=port, log=DEMO_DB.parent / "serve.log", timeout_s=60)


def run_demo(plan_path: Path, *, concurrency: int, port: int, timeout_s: float) -> dict:
    import secrets

    t_start = time.time()
    plan_doc = yaml.safe_load(Path(plan_path).read_text())
    vocabs = [
        plan_doc["baseline"]["vocab_size"],
        *(plan_doc.get("ablation") or {}).get("vocab_sizes", []),
    ]
    prepare_data(vocabs)
    token = secrets.token_urlsafe(24)
    proc = demo_service(port, concurrency, token)
    client = Client(f"http://127.0.0.1:{port}", token)
    try:
        try:
            sweep = client.submit_plan(Path(plan_path).read_bytes())
        except ServiceError as e:
            raise RuntimeError(f"submitting {plan_path}: {e}") from None
        console.print(
            f"sweep {sweep['id']} submitted: {sweep['runs']} "
            f"(API {client.url}/api/v1, docs {client.url}/docs)"
        )
        last = None
        while True:
            s = client.sweep(sweep["id"])
            line = f"phase {s['phase']:<10} " + " ".join(
                f"{k}={v}" for k, v in sorted(s["runs"].items())
            )
            if line != last:
                console.print(f"[{time.time() - t_start:5.0f}s] {line}")
                last = line
            if s["status"] == "done":
                break
            if time.time() - t_start > timeout_s:
                raise RuntimeError(f"the demo did not finish in {timeout_s / 60:.0f} minutes")
            time.sleep(2)
        report = Path(s["report_dir"])
        for _ in range(60):  # the report is written right after the sweep closes
            if (report / "finalists.csv").is_file():
                break
            time.sleep(1)
        summary = show(s, report)
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
    summary["release"] = release_files(sweep["id"])
    summary["wall_s"] = time.time() - t_start
    rel = summary["release"]
    console.print(
        f"\ndemo finished in {summary['wall_s'] / 60:.1f} min. The release:\n"
        f"  report       {rel['results_md']} (and SUMMARY.md, model cards, plots/)\n"
        f"  static page  {rel['html']}\n"
        f"  bundle       {rel['bundle']} (rebuild a run: pax reproduce BUNDLE --run NAME)\n"
        f"  HF export    {rel['hf_export']}\n"
        f"Tables: {report}/results.csv, ranking.csv, finalists.csv; decisions: "
        f"{report}/decisions.md; ledger {DEMO_DB} (`pax serve --db {DEMO_DB}`)."
    )
    return summary


def release_files(sweep_id: int) -> dict:
    """The study's end on the demo: the reproduction bundle (the tree may hold local edits:
    recorded, not refused), the best finalist exported for Hugging Face, then the report with
    its static page, whose model card points at that export."""
    from runner.ledger.db import make_engine
    from runner.release.bundle import write_bundle
    from runner.release.report import write_release_report
    from trainer.export import export_hf

    engine = make_engine(DEMO_DB)
    try:
        bundle = write_bundle(engine, sweep_id, allow_dirty=True)
        best = bundle["best_finalist"]
        hf_dirs, hf = {}, None
        if best.get("weights"):
            report = Path(bundle["bundle"]).parent
            hf = str(report / f"hf-{best['cell']}")
            run_dir = DEMO_DB.parent / "runs" / best["run"]
            export_hf(run_dir, Path(hf))
            hf_dirs[best["cell"]] = hf
        files = write_release_report(engine, sweep_id, html=True, hf_dirs=hf_dirs)
    finally:
        engine.dispose()
    return {
        "results_md": files["results_md"],
        "summary_md": files["summary_md"],
        "summary_pdf": files.get("summary_pdf"),
        "html": files["html"],
        "bundle": bundle["bundle"],
        "bundle_sha256": bundle["sha256"],
        "hf_export": hf,
    }


def show(sweep: dict, report: Path) -> dict:
    import pandas as pd

    ranking = pd.read_csv(report / "ranking.csv")
    finalists = pd.read_csv(report / "finalists.csv")
    results = pd.read_csv(report / "results.csv")
    sample = bool(results["sample"].fillna(False).astype(bool).any())
    t = Table(
        title="ranking (dev word-level PPL, lower is better)" + (" - SAMPLE data" if sample else "")
    )
    for col in ("axis", "rank", "cell", "dev PPL", "killed", "latency ms"):
        t.add_column(col)
    for _, r in ranking.iterrows():
        t.add_row(
            r["axis"],
            str(r["rank"]),
            r["cell"],
            f"{r['dev_ppl']:.2f}",
            str(r["killed"]),
            # none: every seed's latency was measured beside other runs (left out, not mixed)
            "-" if pd.isna(r["latency_ms"]) else f"{r['latency_ms']:.2f}",
        )
    console.print(t)
    f = Table(title="finalists (3 seeds)" + (" - SAMPLE data" if sample else ""))
    for col in ("cell", "dev PPL mean", "std", "95% CI", "SmallBench"):
        f.add_column(col)
    for _, r in finalists.iterrows():
        f.add_row(
            r["cell"],
            f"{r['dev_ppl_mean']:.2f}",
            f"{r['dev_ppl_std']:.2f}",
            f"[{r['dev_ppl_ci95_low']:.2f}, {r['dev_ppl_ci95_high']:.2f}]",
            f"{r['smallbench_mean']:.3f}",
        )
    console.print(f)
    killed = results[results["status"] == "killed"]["name"].tolist()
    console.print(f"killed by the rule: {killed or 'none'}")
    return {
        "sweep_id": sweep["id"],
        "report_dir": str(report),
        "runs": sweep["runs"],
        "killed": killed,
        "finalists": finalists["cell"].tolist(),
        "sample": sample,
    }
