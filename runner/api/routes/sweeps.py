"""/api/v1/sweeps: submit a plan (YAML or JSON), inspect it, promote by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel
from sqlmodel import Session, col, select

from runner import crud, plans
from runner.api.deps import AdminDep, EngineDep, SettingsDep
from runner.models import Sweep

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
SweepId = Annotated[int, PathParam(ge=1, le=2**62)]


class SweepPublic(BaseModel):
    id: int
    name: str
    kind: str
    phase: str
    status: str
    report_dir: str | None
    budget_usd: float | None
    created_at: float
    updated_at: float
    runs: dict[str, int] = {}


class PromoteRequest(BaseModel):
    cells: list[str] | None = None
    force: bool = False


def _public(engine, sw: Sweep) -> SweepPublic:
    with engine.connect() as conn:
        counts = dict(
            conn.exec_driver_sql(
                "SELECT status, COUNT(*) FROM runs WHERE sweep_id = ? GROUP BY status", (sw.id,)
            ).all()
        )
    return SweepPublic(**sw.model_dump(exclude={"spec_json"}), runs=counts)


@router.post(
    "",
    status_code=201,
    response_model=SweepPublic,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def submit_sweep(request: Request, engine: EngineDep, settings: SettingsDep, _: AdminDep):
    """Submit a plan (configs/plan_10m.yaml) or a study sweep file (configs/embed_ratio.yaml)
    as YAML or JSON: every feasible cell is queued, refused cells are recorded as infeasible."""
    from starlette.concurrency import run_in_threadpool

    from trainer.config import ConfigError

    text = (await request.body()).decode("utf-8", errors="replace")
    try:
        plan, kind = plans.load_plan_text(text)
        sweep = await run_in_threadpool(
            plans.submit, engine, plan, kind, Path(settings.reports_root)
        )
    except ConfigError as e:
        raise HTTPException(422, str(e)) from None
    return _public(engine, sweep)


@router.get("", response_model=list[SweepPublic])
def list_sweeps(engine: EngineDep):
    with Session(engine) as s:
        rows = s.exec(select(Sweep).order_by(col(Sweep.id).desc())).all()
    return [_public(engine, sw) for sw in rows]


@router.get("/{sweep_id}")
def get_sweep(sweep_id: SweepId, engine: EngineDep) -> dict[str, Any]:
    try:
        sw = plans.get_sweep(engine, sweep_id)
    except crud.NotFound as e:
        raise HTTPException(404, str(e)) from None
    runs = plans.sweep_runs(engine, sweep_id)
    events = crud.events(engine, sweep_id=sweep_id, limit=100_000)
    return {
        **_public(engine, sw).model_dump(),
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
            {
                "time": e.time,
                "kind": e.kind,
                "reason": e.reason,
                "data": json.loads(e.data_json) if e.data_json else None,
            }
            for e in events
            if e.kind in ("promotion", "infeasible")
            or (e.kind == "state" and e.to_status == "killed")
        ],
    }


@router.post("/{sweep_id}/promote")
def promote(
    sweep_id: SweepId,
    engine: EngineDep,
    _: AdminDep,
    body: Annotated[PromoteRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Promote now (or override the choice with `cells`); automatic when ranking finishes."""
    body = body or PromoteRequest()
    try:
        return plans.promote(
            engine, sweep_id, cells_override=body.cells, force=body.force, who="manual"
        )
    except crud.NotFound as e:
        raise HTTPException(404, str(e)) from None
    except crud.Conflict as e:
        raise HTTPException(409, str(e)) from None


@router.get("/{sweep_id}/decisions.md", response_class=Response)
def decisions(sweep_id: SweepId, engine: EngineDep) -> Response:
    try:
        path = plans.write_decisions(engine, sweep_id)
    except crud.NotFound as e:
        raise HTTPException(404, str(e)) from None
    return Response(path.read_text(), media_type="text/markdown")


@router.get("/{sweep_id}/cost")
def sweep_cost(sweep_id: SweepId, engine: EngineDep) -> dict[str, Any]:
    """GPU-hours and $ per run and phase, spent vs the sweep's budget (also COST_SUMMARY.json
    in the sweep's report folder)."""
    from runner import cost

    try:
        sw = plans.get_sweep(engine, sweep_id)
    except crud.NotFound as e:
        raise HTTPException(404, str(e)) from None
    cost.write_summary(engine, sweep_id, Path(sw.report_dir or f"reports/sweep-{sweep_id:04d}"))
    return cost.sweep_cost(engine, sweep_id)
