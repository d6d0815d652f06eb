"""/api/v1/cloud: warm GPU workers on SkyPilot (`pax cloud up/down/status`). Up records the
workers and returns at once (the pool launches them off the request, retrying what passes);
status is the pool's bill: VM time at the catalog price, split into the runs in the workers'
slots and the idle rest, plus the jobs controller as overhead. Forecast prices a whole plan
on N workers x M slots before anything starts (no SkyPilot needed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from pydantic import Field

from runner.api.deps import PricingDep, SettingsDep
from runner.api.schemas import PLAN_BODY, Strict
from runner.ledger.models import whole
from runner.study.forecast import study_forecast
from runner.study.plan_spec import load_plan_text

router = APIRouter(prefix="/cloud", tags=["cloud"])


class UpRequest(Strict):
    gpu: str = Field(min_length=1, max_length=32, description="The GPU each worker gets (one).")
    workers: whole(1, 64) = Field(1, description="Workers (spot VMs, one GPU each).")
    slots: whole(1, 64) = Field(4, description="Runs each worker trains at once on its GPU.")
    idle_exit_s: whole(0, 86_400) = Field(
        600, description="A worker leaves (and its VM is torn down) after the queue had "
        "nothing for it this long; 0 = never (then `pax cloud down`)."
    )  # fmt: skip


def _pool(request: Request):
    pool = getattr(request.app.state, "cloud_pool", None)
    if pool is None:
        raise HTTPException(
            404,
            "this service does not launch on SkyPilot: start it with PAX_SKY=true, "
            "PAX_SKY_IMAGE and PAX_SKY_RUNNER_URL set (pip install 'pax[cloud]'; docs/deploy.md)",
        )
    return pool


@router.post("/up", status_code=202)
def up(request: Request, body: Annotated[UpRequest, Body()]) -> dict[str, Any]:
    """Ask for `workers` warm workers of `gpu` with `slots` each; their runs are those with
    `launcher: worker`. Answers at once; `GET /cloud` follows them."""
    pool = _pool(request)
    try:
        rows = pool.up(
            accelerator=body.gpu,
            workers=body.workers,
            slots=body.slots,
            idle_exit_s=float(body.idle_exit_s),
        )
    except ValueError as e:
        raise HTTPException(422, f"gpu: {e}" if "accelerator=" in str(e) else str(e)) from None
    return {"workers": [w.name for w in rows], "bucket": pool.opts.bucket}


@router.post(
    "/forecast",
    openapi_extra=PLAN_BODY,
)
async def forecast(
    request: Request,
    pricing: PricingDep,
    settings: SettingsDep,
    gpu: Annotated[str, Query(min_length=1, max_length=32, description="The workers' GPU.")],
    workers: Annotated[int, Query(ge=1, le=64)] = 1,
    slots: Annotated[int, Query(ge=1, le=64, description="Runs at once per GPU.")] = 4,
    idle_exit_s: Annotated[int, Query(ge=0, le=86_400)] = 600,
    spot: bool = True,
) -> dict[str, Any]:
    """What a plan (the body, as POST /sweeps takes it) costs and how long it takes on
    `workers` x `slots` of `gpu`, and as one managed job per run, before anything is launched:
    dollars, GPU-hours and wall time per phase, an upper bound (docs/deploy.md)."""
    plan, kind = load_plan_text((await request.body()).decode("utf-8", errors="replace"))
    try:
        return study_forecast(
            pricing,
            plan,
            kind,
            accelerator=gpu,
            spot=spot,
            workers=workers,
            slots=slots,
            idle_exit_s=float(idle_exit_s),
            concurrency=settings.sky_concurrency,
        )
    except ValueError as e:  # a GPU without a price
        raise HTTPException(422, f"gpu: {e}") from None


@router.post("/down")
def down(request: Request) -> dict[str, Any]:
    """Every live worker cancelled (its trainers checkpoint; their runs are requeued)."""
    return {"stopping": _pool(request).down()}


@router.get("")
def status(request: Request) -> dict[str, Any]:
    """The workers, their states and reasons, and the bill (runs + idle + controller)."""
    return _pool(request).status(ledger_id=request.app.state.ledger_id)
