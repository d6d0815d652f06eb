"""`bench/gpu_check.py --study`: the product's main job on one GPU. A real `pax serve` with
PAX_GPUS=1 and PAX_GPU_SLOTS=N runs a plan (configs/plan_10m.yaml, its token budgets scaled by
`--study-scale` to fit a few minutes) through ranking, the kill rule, promotion and finalists to
its report; then the wall time, GPU-hours, what one GPU at the price table's spot price costs
for that time, the aggregate tokens/s, and a forecast of the unscaled plan from them.

On CPU (`--device cpu`, the suite's smoke test) the same path runs with PAX_GPUS=0 and the
plan given with `--study-plan`, so every part is exercised before it first meets a GPU.
"""

from __future__ import annotations

import copy
import secrets
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# the token budgets a plan scales by: what it trains, and what is counted in tokens with it
SCALED = (
    ("ranking", "max_tokens"),
    ("finalists", "max_tokens"),
    ("kill_rule", "window_tokens"),
    ("base", "eval", "every_tokens"),
    ("base", "optim", "warmup_tokens"),
)


def count(v) -> int:
    """A token count as plans write it: 5M, 250k, 30_000_000."""
    from trainer.params import parse_count

    return int(parse_count(v))


def scaled_plan(doc: dict, factor: float) -> dict:
    """The plan with every token budget (and what is counted with it) times `factor`."""
    out = copy.deepcopy(doc)
    for path in SCALED:
        node = out
        for k in path[:-1]:
            node = node.get(k) or {}
        if path[-1] in node and node[path[-1]]:
            node[path[-1]] = max(1, int(count(node[path[-1]]) * factor))
    out["name"] = f"{doc.get('name', 'plan')}-x{factor:g}"
    out.pop("budget_usd", None)  # scaled runs on this host: the cap is the unscaled plan's
    return out


def planned_tokens(doc: dict) -> tuple[int, int]:
    """(low, high) tokens of the whole plan: ranking, then the finalists' range."""
    from runner.study.forecast import phases
    from runner.study.plan_spec import load_plan_text

    plan, kind = load_plan_text(yaml.safe_dump(doc))
    ph = phases(plan, kind)
    return tuple(sum(p["runs"][i] * p["tokens_per_run"] for p in ph) for i in (0, 1))


def study(args, budget) -> dict:
    from pax.client import Client, free_port, start_service
    from runner.cost import Pricing

    plan_path = Path(args.study_plan or ROOT / "configs" / "plan_10m.yaml")
    doc = yaml.safe_load(plan_path.read_text())
    scaled = scaled_plan(doc, args.study_scale)
    # the LR grid triples the ranking runs, and each run's start-up and evaluations do not
    # scale down with its tokens: left out of the scaled run unless asked for
    grid = (scaled.get("ranking") or {}).get("lr_grid")
    if grid and not getattr(args, "study_lr_grid", False):
        scaled["ranking"].pop("lr_grid")
    cuda = args.device == "cuda"
    tmp = Path(tempfile.mkdtemp(prefix="pax-gpu-study-"))
    token = secrets.token_urlsafe(32)
    env = {
        "PAX_DB": str(tmp / "pax.db"),
        "PAX_ADMIN_TOKEN": token,
        "PAX_RUNS_ROOT": str(tmp / "runs"),
        "PAX_REPORTS_ROOT": str(tmp / "reports"),
        # one GPU with N slots: on CPU too, so the slot placement (and MPS's absence, said in
        # /healthz) are exercised before the check first meets a GPU
        "PAX_GPUS": "1",
        "PAX_GPU_SLOTS": str(args.study_slots),
        "PAX_CONCURRENCY": str(args.study_slots),
        "PAX_ACCELERATOR": args.study_gpu if cuda else "",
        "PAX_SPOT": "true",
    }
    gpu = args.study_gpu
    price, source = Pricing().price_for(gpu, True)
    out: dict = {"plan": str(plan_path.relative_to(ROOT) if plan_path.is_relative_to(ROOT)
                             else plan_path), "scale": args.study_scale,
                 "slots": args.study_slots, "price_gpu": gpu, "price_per_hour": price,
                 "price_source": source}  # fmt: skip
    out["lr_grid_in_scaled_run"] = bool(grid and "lr_grid" in scaled["ranking"])
    if budget.left() < 30:
        return {**out, "skipped": "the check's time budget is spent"}
    port = free_port()
    proc = start_service(env, port=port, cwd=ROOT, log=tmp / "serve.log", timeout_s=120)
    t0 = time.monotonic()
    try:
        with Client(f"http://127.0.0.1:{port}", token, timeout=60) as c:
            out["mps"] = c.health().get("mps")  # whether packed runs share the GPU by MPS
            sw = c.submit_plan(yaml.safe_dump(scaled, sort_keys=False))
            done = _wait(c, sw["id"], budget)
            wall = time.monotonic() - t0
            out["sweep_status"] = done["status"]
            written = c.post(f"/sweeps/{sw['id']}/report", params={"pdf": "false"})
            cost = c.get(f"/sweeps/{sw['id']}/cost")
            runs = c.get("/runs", params={"sweep": sw["id"], "limit": 1000})["items"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
    tokens = sum(r["tokens_seen"] for r in cost["runs"])
    tps = tokens / wall if wall > 0 else 0.0
    low, high = planned_tokens(doc)
    by_status: dict[str, int] = {}
    for r in runs:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    results_md = Path(written.get("results_md") or "")
    if not results_md.is_absolute():
        results_md = ROOT / results_md  # the service's working folder
    out.update(
        wall_s=wall,
        runs=by_status,
        phases=sorted({r["phase"] or "-" for r in runs}),
        tokens=tokens,
        aggregate_tokens_per_s=tps,
        gpu_hours=cost["gpu_hours"],
        charged_usd=cost["spent_usd"],
        one_gpu_usd=wall / 3600 * price,  # one GPU held for the wall time
        report=str(results_md) if results_md.is_file() else None,
        forecast_unscaled={
            "tokens": [low, high],
            "wall_min": [low / tps / 60, high / tps / 60] if tps else None,
            "usd": [low / tps / 3600 * price, high / tps / 3600 * price] if tps else None,
            "basis": "the scaled plan's aggregate tokens/s on this device, one GPU held "
            "throughout; start-up and evaluation scale with it",
        },
        serve_log_tail=(tmp / "serve.log").read_text(errors="replace")[-1500:]
        if done["status"] != "done"
        else None,
    )
    return out


def _wait(c, sweep_id: int, budget) -> dict:
    """The sweep once done, or as it stands when the budget is spent."""
    while True:
        sw = c.sweep(sweep_id)
        if sw["status"] == "done" or budget.left() < 10:
            return sw
        time.sleep(min(2.0, max(0.2, budget.left() / 100)))
