"""`pax sky launch` / scripts/launch_spot.py: runs or sweeps as SkyPilot managed spot jobs.

With a service (`--runner-url`), each cell is submitted to the ledger first (so it gets an id,
a token and a row that tracks its cost), then launched; without one the jobs run on their own
and keep everything in the checkpoint bucket. The forecast is printed before anything starts.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import yaml


def _cells(config: Path, exp: str | None) -> list[dict]:
    from runner.study.plan_spec import cell_config, cells, load_plan_text
    from trainer.config import ConfigError, raw_config, validate

    text = Path(config).read_text()
    doc = yaml.safe_load(text) or {}
    if "ranking" in doc or ("experiments" in doc and exp is None):
        plan, kind = load_plan_text(text)
        out = []
        if kind == "sweep":
            for name in plan.experiments:
                out.append(validate(raw_config(config, name)).model_dump())
        else:
            for c in cells(plan):
                for seed in plan.ranking.seeds:
                    try:
                        out.append(
                            validate(
                                cell_config(plan, c, seed=seed, max_tokens=plan.ranking.max_tokens)
                            ).model_dump()
                        )
                    except ConfigError:
                        continue  # refused by the planner: not launched
        return out
    return [validate(raw_config(config, exp)).model_dump()]


def launch_spot(
    config: Path,
    *,
    exp: str | None,
    runner_url: str,
    admin_token: str | None,
    accelerators: tuple[str, ...],
    image: str,
    bucket: str,
    tokens_per_s: float,
    confirm,
    log,
    adapter=None,
) -> dict:
    from runner.launch.base import LaunchSpec
    from runner.launch.cost import Pricing
    from runner.launch.sky_adapter import SkyAdapter
    from runner.launch.skypilot import SkyOptions, build_task, validate_options

    opts = SkyOptions(image=image, accelerators=accelerators, bucket=bucket)
    validate_options(opts)
    runs = _cells(config, exp)
    tokens = sum(r["max_tokens"] for r in runs)
    hours = tokens / tokens_per_s / 3600
    pricing = Pricing()
    low = min(pricing.attempt_cost(hours * 3600, a, True)[1] for a in accelerators)
    high = max(pricing.attempt_cost(hours * 3600, a, True)[1] for a in accelerators)
    msg = (
        f"{len(runs)} spot runs, {tokens / 1e6:.1f}M tokens, ~{hours:.2f} GPU-hours at "
        f"{tokens_per_s:,.0f} tokens/s: forecast ${low:.2f}-${high:.2f} on "
        f"{'/'.join(accelerators)} spot (prices of configs/prices.yaml). Launch?"
    )
    log(msg)
    if not confirm(msg):
        return {"launched": [], "forecast_usd": [low, high], "confirmed": False}
    adapter = adapter or SkyAdapter()
    launched = []
    for i, cfg in enumerate(runs):
        run_id, token = f"local-{secrets.token_hex(4)}-{i}", secrets.token_urlsafe(24)
        if runner_url:
            if not admin_token:
                raise ValueError(
                    "--runner-url needs the admin token (--token or "
                    "PAX_ADMIN_TOKEN) to register the runs"
                )
            r = httpx.post(
                f"{runner_url.rstrip('/')}/api/v1/runs",
                json={"config": cfg},
                headers={"Authorization": f"Bearer {admin_token}"},
                timeout=60,
            )
            if r.status_code != 201:
                raise RuntimeError(f"the service refused run {cfg['name']}: {r.text[:300]}")
            run_id, token = str(r.json()["id"]), admin_token
        spec = LaunchSpec(
            run_id=run_id,
            attempt=1,
            run_dir=Path("/pax/runs") / run_id,
            config_path=Path("spec.yaml"),
            env={"PAX_RUNNER_URL": runner_url, "PAX_RUN_ID": run_id, "PAX_RUN_TOKEN": token},
        )
        try:
            job = adapter.launch(build_task(spec, cfg, opts), name=f"pax-run-{run_id}")
        except Exception as e:  # SkyPilot's own message says which credentials are missing
            raise RuntimeError(
                f"SkyPilot could not launch {cfg['name']}: {e}. Run `sky check` "
                "to set up cloud credentials."
            ) from None
        log(f"launched {cfg['name']} as managed job {job} (run {run_id})")
        launched.append({"name": cfg["name"], "run_id": run_id, "job_id": job})
    return {"launched": launched, "forecast_usd": [low, high], "confirmed": True}
