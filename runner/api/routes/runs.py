"""/api/v1/runs: submit, list, inspect, cancel; and the trainer-facing metrics, heartbeat and
result posts."""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from runner import crud
from runner.api.deps import AdminDep, EngineDep, SettingsDep, TokenDep, describe_errors
from runner.ingest import writer_for
from runner.models import (
    EventPublic,
    Heartbeat,
    MetricsAck,
    MetricSeries,
    MetricsPost,
    Run,
    RunCreate,
    RunDetail,
    RunList,
    RunPublic,
)

router = APIRouter(prefix="/runs", tags=["runs"])
RunId = Annotated[int, Path(ge=1, le=2**62, description="Run id.")]


def public(run: Run, latest: dict[str, float] | None = None) -> RunPublic:
    return RunPublic(**run.model_dump(exclude={"spec_json", "token_hash"}), latest=latest or {})


def _run_or_404(engine, run_id: int) -> Run:
    try:
        return crud.get_run(engine, run_id=run_id)
    except crud.NotFound as e:
        raise HTTPException(404, str(e)) from None


@router.post("", status_code=201, response_model=RunPublic)
def submit_run(
    engine: EngineDep,
    _: AdminDep,
    body: Annotated[
        dict[str, Any],
        Body(
            openapi_examples={
                "wrapped": {
                    "value": {
                        "config": {
                            "name": "emb25",
                            "max_tokens": 5_000_000,
                            "model": {"embedding_ratio": 0.25},
                        },
                        "priority": 10,
                    }
                },
                "bare": {"value": {"name": "emb35", "model": {"embedding_ratio": 0.35}}},
            }
        ),
    ],
):
    """Queue a run: a train config as JSON, or {"config": ..., "name": ..., "priority": ...}."""
    from trainer.config import ConfigError

    try:
        req = RunCreate.model_validate(body if "config" in body else {"config": body})
    except ValidationError as e:
        raise HTTPException(
            422, "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        ) from None
    try:
        run = crud.create_run(
            engine,
            config=req.config,
            name=req.name,
            priority=req.priority,
            sweep_id=req.sweep_id,
            phase=req.phase,
        )
    except ConfigError as e:
        raise HTTPException(422, str(e)) from None
    return public(run)


@router.get("", response_model=RunList)
def list_runs(
    engine: EngineDep,
    status: Annotated[str | None, Query(description="Filter by status.")] = None,
    sweep: Annotated[int | None, Query(description="Filter by sweep id.")] = None,
    limit: Annotated[int, Query(ge=1, le=crud.LIST_LIMIT_MAX)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    runs, total = crud.list_runs(engine, status=status, sweep_id=sweep, limit=limit, offset=offset)
    latest = crud.latest_for(engine, run_ids=[r.id for r in runs])
    return RunList(
        items=[public(r, latest.get(r.id)) for r in runs], total=total, limit=limit, offset=offset
    )


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: RunId, engine: EngineDep):
    run = _run_or_404(engine, run_id)
    latest = crud.latest_for(engine, run_ids=[run_id]).get(run_id)
    return RunDetail(
        **public(run, latest).model_dump(),
        config=json.loads(run.spec_json),
        result=crud.get_result(engine, run_id=run_id),
    )


@router.post("/{run_id}/cancel", response_model=RunPublic)
def cancel_run(run_id: RunId, engine: EngineDep, _: AdminDep):
    try:
        return public(crud.cancel_run(engine, run_id=run_id))
    except crud.NotFound as e:
        raise HTTPException(404, str(e)) from None
    except crud.Conflict as e:
        raise HTTPException(409, str(e)) from None


@router.get("/{run_id}/metrics", response_model=MetricSeries)
def get_metrics(
    run_id: RunId,
    engine: EngineDep,
    name: Annotated[str, Query(min_length=1, max_length=100)] = "train/loss",
    max_points: Annotated[int, Query(ge=2, le=10_000)] = 500,
):
    """One metric's points by step, evenly downsampled to at most `max_points`."""
    _run_or_404(engine, run_id)
    points, total = crud.metric_series(engine, run_id=run_id, name=name, max_points=max_points)
    return MetricSeries(
        run_id=run_id, name=name, points=points, total=total, downsampled=len(points) < total
    )


@router.get("/{run_id}/events", response_model=list[EventPublic])
def get_events(run_id: RunId, engine: EngineDep):
    _run_or_404(engine, run_id)
    return [
        EventPublic(
            **e.model_dump(exclude={"data_json"}),
            data=json.loads(e.data_json) if e.data_json else None,
        )
        for e in crud.events(engine, run_id=run_id)
    ]


def _authorised(engine, settings, request: Request, run_id: RunId, token: str) -> Run:
    try:
        return crud.check_run_token(
            engine, run_id=run_id, token=token, admin_token=request.app.state.admin_token
        )
    except crud.NotFound as e:
        raise HTTPException(404, str(e)) from None
    except PermissionError as e:
        raise HTTPException(403, f"{e}: a run token may post only to its own run") from None


def _inline_schema(model) -> dict:
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    schema["properties"]["points"]["items"] = defs["Point"]
    return schema


@router.post(
    "/{run_id}/metrics",
    response_model=MetricsAck,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_schema(MetricsPost)}},
        }
    },
)
async def post_metrics(
    run_id: RunId,
    engine: EngineDep,
    settings: SettingsDep,
    token: TokenDep,
    request: Request,
):
    """Trainer-facing: a batch of points; a repeated point (same run, name, step) is harmless.
    The answer says whether to continue or stop (cancel, or the kill rule)."""
    # the body is parsed and validated in one pass from bytes (pydantic's JSON mode): this is
    # the ingest hot path, and FastAPI's dict-then-model route costs twice as much
    try:
        body = MetricsPost.model_validate_json(await request.body())
    except ValidationError as e:
        raise HTTPException(422, describe_errors(e.errors())) from None
    if len(body.points) > settings.max_points_per_post:
        raise HTTPException(
            413,
            f"{len(body.points)} points in one post; the limit is "
            f"{settings.max_points_per_post}: split the batch",
        )
    # async: the request waits for its group commit without holding a worker thread
    run = _authorised(engine, settings, request, run_id, token)
    rows = [(run.id, p.name, p.step, p.tokens, p.value) for p in body.points]
    inserted = await asyncio.wrap_future(writer_for(engine).enqueue(run.id, rows)) if rows else 0
    kill_rule = getattr(request.app.state, "kill_rule", None)
    points = [r[1:] for r in rows]
    if kill_rule is not None and rows:
        action, reason = await run_in_threadpool(
            crud.decide, engine, run=run, points=points, kill_rule=kill_rule
        )
    else:
        action, reason = crud.decide(engine, run=run, points=points)
    return MetricsAck(
        accepted=len(rows), duplicates=len(rows) - inserted, action=action, reason=reason
    )


@router.post("/{run_id}/heartbeat", response_model=MetricsAck)
def post_heartbeat(
    run_id: RunId,
    engine: EngineDep,
    settings: SettingsDep,
    token: TokenDep,
    request: Request,
    body: Heartbeat | None = None,
):
    run = _authorised(engine, settings, request, run_id, token)
    body = body or Heartbeat()
    action, reason = crud.heartbeat(
        engine, run=run, step=body.step, tokens=body.tokens, attempt=body.attempt
    )
    return MetricsAck(accepted=0, duplicates=0, action=action, reason=reason)


@router.post("/{run_id}/result", response_model=RunPublic)
def post_result(
    run_id: RunId,
    engine: EngineDep,
    settings: SettingsDep,
    token: TokenDep,
    request: Request,
    metrics: Annotated[dict[str, Any], Body()],
):
    """Trainer-facing: the run's final metrics.json."""
    run = _authorised(engine, settings, request, run_id, token)
    if not isinstance(metrics.get("run"), dict) or "status" not in metrics["run"]:
        raise HTTPException(422, "result: expected a metrics.json document with run.status")
    try:
        return public(crud.post_result(engine, run=run, metrics=metrics))
    except ValueError as e:  # NaN/inf inside the document
        raise HTTPException(422, f"result: {e}") from None


@router.get("/{run_id}/log", response_class=Response)
def get_log(run_id: RunId, engine: EngineDep, tail: Annotated[int, Query(ge=1, le=100_000)] = 200):
    """The last lines of the run's train.log (local and docker launchers)."""
    run = _run_or_404(engine, run_id)
    path = pathlib.Path(run.run_dir or "") / "train.log"
    if not run.run_dir or not path.is_file():
        return Response("", media_type="text/plain")
    lines = path.read_text(errors="replace").splitlines()[-tail:]
    return Response("\n".join(lines) + "\n", media_type="text/plain")
