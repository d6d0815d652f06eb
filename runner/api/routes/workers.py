"""Pull-based capacity: `pax worker` claims queued runs over HTTP and reports their exits."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, Response
from pydantic import BaseModel, Field

from runner import crud
from runner.api.deps import AdminDep, EngineDep, SettingsDep, TokenDep
from runner.api.routes.runs import RunId, _authorised

router = APIRouter(tags=["workers"])


class ClaimRequest(BaseModel):
    worker: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="The worker's name (host, GPU index...).",
    )


class Claim(BaseModel):
    run_id: int
    name: str
    attempt: int
    run_token: str
    config: dict[str, Any]
    heartbeat_s: float


class ExitReport(BaseModel):
    code: int = Field(ge=-255, le=255, description="The trainer's exit code.")


@router.post("/claim", response_model=Claim, responses={204: {"description": "queue empty"}})
def claim(body: ClaimRequest, engine: EngineDep, settings: SettingsDep, _: AdminDep):
    """Atomically take the next queued run (priority, then age) for a worker; 204 when the
    queue is empty. The answer carries the run's own token for its trainer."""
    got = crud.claim_queued(engine, limit=1, launcher=f"worker:{body.worker}")
    if not got:
        return Response(status_code=204)
    run, token = got[0]
    crud.move(
        engine,
        run_id=run.id,
        to="running",
        only_from=("launching",),
        reason=f"started by worker {body.worker}",
    )
    return Claim(
        run_id=run.id,
        name=run.name,
        attempt=run.attempt,
        run_token=token,
        config=json.loads(run.spec_json),
        heartbeat_s=settings.heartbeat_s,
    )


@router.post("/runs/{run_id}/exit")
def report_exit(
    run_id: RunId,
    engine: EngineDep,
    settings: SettingsDep,
    token: TokenDep,
    request: Request,
    body: Annotated[ExitReport, Body()],
) -> dict:
    """A worker reports how its trainer ended; the run moves on as with the local launcher."""
    from runner.scheduler import apply_exit

    run = _authorised(engine, settings, request, run_id, token)
    if run.status not in ("launching", "running", "succeeded", "killed", "failed", "cancelled"):
        raise HTTPException(409, f"run {run_id} is {run.status}; nothing to settle")
    apply_exit(
        engine,
        run_id,
        body.code,
        settings.max_attempts,
        log="the worker's train.log",
        metrics=crud.get_result(engine, run_id=run_id),
    )
    return {"run_id": run_id, "status": crud.get_run(engine, run_id=run_id).status}
