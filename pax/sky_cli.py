"""`pax sky launch` / scripts/launch_spot.py: runs or whole sweeps on SkyPilot, through the
service.

The service launches every cloud job (one launch path: its scheduler, its SkyPilot launcher,
its ledger rows with their own run tokens, its budget caps and its charges). This command reads
the service's SkyPilot options, prints the forecast on each acceptable GPU (and, with
`--dry-run`, the exact task with its secret redacted), asks, and then submits: a plan or a
study sweep file to /sweeps, one experiment to /runs, each asking for the SkyPilot launcher.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pax.client import Client
from runner.launch.base import LaunchSpec
from runner.launch.skypilot import SkyOptions, redacted_yaml, task_config


def cells(config: Path, exp: str | None) -> tuple[list[dict], str]:
    """(validated configs of the runs, what kind of file): a plan's ranking cells, a sweep
    file's experiments, or one experiment."""
    from runner.study.plan_spec import cell_config, load_plan_text
    from runner.study.plan_spec import cells as plan_cells
    from trainer.config import ConfigError, raw_config, validate

    text = Path(config).read_text()
    doc = yaml.safe_load(text) or {}
    if "ranking" in doc or ("experiments" in doc and exp is None):
        plan, kind = load_plan_text(text)
        if kind == "sweep":
            return [
                validate(raw_config(config, name)).model_dump() for name in plan.experiments
            ], kind
        out = []
        for c in plan_cells(plan):
            for seed in plan.ranking.seeds:
                try:
                    cfg = cell_config(plan, c, seed=seed, max_tokens=plan.ranking.max_tokens)
                    out.append(validate(cfg).model_dump())
                except ConfigError:
                    continue  # refused by the planner: recorded as infeasible, not launched
        return out, kind
    return [validate(raw_config(config, exp)).model_dump()], "run"


def sky_launch(
    config: Path,
    *,
    exp: str | None,
    client: Client,
    confirm,
    log,
    dry_run: bool = False,
) -> dict:
    """Forecast, ask, then submit through the service (`client`, with the admin token)."""
    opts = _options(client.sky_options())
    runs, kind = cells(config, exp)
    if not runs:
        raise ValueError(f"{config}: no run the planner can build; nothing to launch")
    tokens = sum(cfg["max_tokens"] for cfg in runs)
    f = client.sky_forecast(tokens=tokens, jobs=len(runs))
    per_gpu = ", ".join(f"{g} ${x['usd']:.2f}" for g, x in f["by_accelerator"].items())
    where = (
        f"jobs post to {opts.runner_url}"
        if opts.runner_url
        else "no inbound connection: jobs are heard through the bucket"
    )
    msg = (
        f"{len(runs)} {'spot' if opts.use_spot else 'on-demand'} runs, {tokens / 1e6:.1f}M "
        f"tokens: forecast ${f['low_usd']:.2f}-${f['high_usd']:.2f} ({per_gpu}; start-ups "
        f"included), bucket {opts.bucket}, {where}. Launch?"
    )
    log(msg)
    task = task_config(
        LaunchSpec(
            run_id=0,
            attempt=1,
            run_dir=Path("/pax/runs/0"),
            config_path=Path("spec.json"),
            env={"PAX_RUN_TOKEN": "<the run's own token>"},
        ),
        runs[0],
        opts,
    )
    if dry_run:
        return {"dry_run": True, "forecast": f, "task_yaml": redacted_yaml(task), "runs": len(runs)}
    if not confirm(msg):
        return {"launched": [], "forecast": f, "confirmed": False}
    if kind in ("plan", "sweep"):
        got = client.submit_plan(Path(config).read_bytes(), launcher="skypilot")
    else:
        got = client.submit_run(runs[0], launcher="skypilot")
    log(f"submitted: the service launches them on SkyPilot ({kind} {got['id']})")
    return {"submitted": got, "kind": kind, "forecast": f, "confirmed": True}


def _options(doc: dict) -> SkyOptions:
    fields = set(SkyOptions.__dataclass_fields__)
    kept = {k: v for k, v in doc.items() if k in fields}
    kept["accelerators"] = tuple(kept.get("accelerators", ()))
    return SkyOptions(**kept)
