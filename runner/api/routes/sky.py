"""/api/v1/sky: what this service launches on SkyPilot (its options, no secrets), and what a
number of tokens would cost there. `pax sky launch` reads both, prints the forecast and the
exact task, then submits through /runs or /sweeps like anything else: one launch path."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from pydantic import Field

from runner.api.deps import EngineDep, PricingDep
from runner.api.schemas import Strict
from runner.cost import measured_tokens_per_s
from runner.ledger.models import whole

router = APIRouter(prefix="/sky", tags=["sky"])


class ForecastRequest(Strict):
    tokens: whole(0, 10**13) = Field(description="Tokens to train, in all.")
    jobs: whole(0, 100_000) = Field(description="Cloud jobs (a start-up each).")
    sweep_id: whole(1, 2**62) | None = None


def _options(request: Request):
    launcher = request.app.state.sky_launcher
    if launcher is None:
        raise HTTPException(
            404,
            "this service does not launch on SkyPilot: start it with PAX_SKY=true and "
            "PAX_SKY_IMAGE set (pip install .[cloud]; docs/deploy.md)",
        )
    return launcher.opts


@router.get("")
def sky_options(request: Request) -> dict[str, Any]:
    """The options every SkyPilot job of this service gets (the image, GPUs, bucket, runner
    URL or no-inbound mode)."""
    opts = _options(request)
    return {**asdict(opts), "no_inbound": opts.runner_url is None}


@router.post("/forecast")
def forecast(
    request: Request,
    engine: EngineDep,
    pricing: PricingDep,
    body: Annotated[ForecastRequest, Body()],
) -> dict[str, Any]:
    """What `tokens` in `jobs` cloud jobs would cost on each acceptable GPU: at the speed the
    ledger measured on it (else the price table's prior), plus a start-up per job."""
    opts = _options(request)
    out = {}
    for gpu in opts.accelerators:
        tps = measured_tokens_per_s(engine, body.sweep_id, gpu)
        out[gpu] = pricing.forecast(
            body.tokens, accelerator=gpu, spot=opts.use_spot, tokens_per_s=tps, jobs=body.jobs
        )
    usd = [f["usd"] for f in out.values()]
    return {"by_accelerator": out, "low_usd": min(usd), "high_usd": max(usd)}
