"""/api/v1/sweeps: submit a plan (YAML or JSON), inspect it, promote by hand, resume a paused
one, its cost and decisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from runner.api.deps import (
    EngineDep,
    GuardedDep,
    PricingDep,
    SettingsDep,
    check_data,
    check_launchable,
)
from runner.api.schemas import PLAN_BODY, Launch, PromoteRequest, SweepPublic
from runner.cost import sweep_cost
from runner.ledger import events
from runner.ledger import sweeps as sweep_store
from runner.ledger.models import Sweep
from runner.study import sweeps
from runner.study.decisions import render_decisions, report_dir
from runner.study.plan_spec import load_plan_text

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
SweepId = Annotated[int, PathParam(ge=1, le=2**62)]


def _public(sw: Sweep, counts: dict[str, int]) -> SweepPublic:
    return SweepPublic(**sw.model_dump(exclude={"spec_json"}), runs=counts)


@router.post(
    "",
    status_code=201,
    response_model=SweepPublic,
    openapi_extra=PLAN_BODY,
)
async def submit_sweep(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    pricing: PricingDep,
    _: GuardedDep,
    launcher: Annotated[Launch | None, Query(description="Where its runs train.")] = None,
):
    """Submit a plan (configs/plan_10m.yaml) or a study sweep file (configs/embed_ratio.yaml)
    as YAML or JSON: every feasible cell is queued, refused cells are recorded as infeasible.
    `launcher` (or the plan's own `launcher:`) sends its runs to SkyPilot or to workers."""
    text = (await request.body()).decode("utf-8", errors="replace")
    plan, kind = load_plan_text(text)
    if launcher is not None:
        plan = plan.model_copy(update={"launcher": launcher})
    check_launchable(request, plan.launcher)
    sweep = await run_in_threadpool(
        sweeps.submit,
        engine,
        plan,
        kind,
        Path(settings.reports_root),
        pricing,
        lambda cfgs: check_data(request, cfgs, plan.launcher),
    )
    return _public(sweep, sweep_store.run_counts(engine, sweep_ids=[sweep.id])[sweep.id])


@router.get("", response_model=list[SweepPublic])
def list_sweeps(engine: EngineDep):
    rows = sweep_store.list_sweeps(engine)
    counts = sweep_store.run_counts(engine, sweep_ids=[sw.id for sw in rows])
    return [_public(sw, counts[sw.id]) for sw in rows]


@router.get("/{sweep_id}")
def get_sweep(sweep_id: SweepId, engine: EngineDep) -> dict[str, Any]:
    sw = sweep_store.get_sweep(engine, sweep_id=sweep_id)
    runs = sweep_store.sweep_runs(engine, sweep_id=sweep_id)
    decided = events.events(
        engine,
        sweep_id=sweep_id,
        kinds=("promotion", "infeasible", "kill", "budget"),
        limit=100_000,
    )
    return {
        **_public(sw, sweep_store.run_counts(engine, sweep_ids=[sweep_id])[sweep_id]).model_dump(),
        "plan": json.loads(sw.spec_json),
        "cells": [
            {
                "run_id": r.id,
                "cell": r.cell,
                "axis": r.axis,
                "phase": r.phase,
                "seed": r.seed,
                "status": r.status,
                "is_baseline": r.is_baseline,
            }
            for r in runs
        ],
        "decisions": [
            {k: e[k] for k in ("time", "kind", "run_id", "reason", "data")} for e in decided
        ],
    }


@router.post("/{sweep_id}/promote")
def promote(
    sweep_id: SweepId,
    engine: EngineDep,
    pricing: PricingDep,
    _: GuardedDep,
    body: Annotated[PromoteRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Promote now (or override the choice with `cells`); automatic when ranking finishes."""
    body = body or PromoteRequest()
    return sweeps.promote(
        engine,
        sweep_id,
        pricing=pricing,
        cells_override=body.cells,
        force=body.force,
        who="manual",
    )


@router.post("/{sweep_id}/resume", response_model=SweepPublic)
def resume(sweep_id: SweepId, engine: EngineDep, _: GuardedDep):
    """Launch a paused sweep's runs again, once the cause in its `paused_reason` is fixed (a
    launch error no wait could cure: SkyPilot missing, no cloud access, a bad credential).
    409 when the sweep is not paused."""
    sw = sweep_store.resume_sweep(engine, sweep_id=sweep_id, who="the API")
    return _public(sw, sweep_store.run_counts(engine, sweep_ids=[sweep_id])[sweep_id])


@router.get("/{sweep_id}/decisions.md", response_class=Response)
def decisions(sweep_id: SweepId, engine: EngineDep) -> Response:
    """decisions.md as written at the sweep's last decision (rendered from the ledger when the
    file is not there, e.g. on another replica)."""
    path = report_dir(sweep_store.get_sweep(engine, sweep_id=sweep_id)) / "decisions.md"
    text = path.read_text() if path.is_file() else render_decisions(engine, sweep_id)
    return Response(text, media_type="text/markdown")


@router.post("/{sweep_id}/report")
async def report(
    sweep_id: SweepId,
    engine: EngineDep,
    pricing: PricingDep,
    _: GuardedDep,
    html: Annotated[bool, Query(description="Also the static page RESULTS.html.")] = True,
    pdf: Annotated[bool, Query(description="SUMMARY.pdf when a converter is here.")] = True,
) -> dict[str, Any]:
    """Write the sweep's report folder from the ledger (RESULTS.md, SUMMARY.md, model cards,
    figures, tables; the same as `pax report --sweep ID`); returns the files written."""
    from runner.release.report import write_release_report

    sweep_store.get_sweep(engine, sweep_id=sweep_id)
    return await run_in_threadpool(
        write_release_report, engine, sweep_id, pricing, html=html, pdf=pdf
    )


@router.get("/{sweep_id}/cost")
def cost(
    sweep_id: SweepId,
    engine: EngineDep,
    pricing: PricingDep,
    what_if: Annotated[
        str | None,
        Query(max_length=40, description="A GPU of the price table to forecast the sweep on."),
    ] = None,
) -> dict[str, Any]:
    """GPU-hours and $ per run and phase, spent vs the sweep's budget, compute used, and what
    the sweep would cost on a cloud GPU (a snapshot is kept in COST_SUMMARY.json in the
    sweep's report folder at each phase change)."""
    sweep_store.get_sweep(engine, sweep_id=sweep_id)
    try:
        return sweep_cost(engine, sweep_id, pricing, what_if=what_if)
    except ValueError as e:
        raise HTTPException(422, f"what_if: {e}") from None
