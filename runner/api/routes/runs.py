"""/api/v1/runs: submit, list, inspect, cancel; and the trainer-facing metrics, heartbeat, result
and exit posts."""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from runner.api.deps import (
    EngineDep,
    GuardedDep,
    KillRuleDep,
    PricingDep,
    RunCallerDep,
    SettingsDep,
    WriterDep,
    check_data,
    check_launchable,
)
from runner.api.schemas import (
    AttemptPublic,
    EventPublic,
    ExitReport,
    Heartbeat,
    MetricsAck,
    MetricSeries,
    MetricsPost,
    RunCreate,
    RunDetail,
    RunList,
    RunPublic,
)
from runner.ledger import attempts, events, lifecycle, results, runs, series
from runner.ledger.models import FINISHED, Run, RunStatus
from runner.ledger.result_doc import ResultDoc, check_result
from runner.ledger.stops import stop_answer
from trainer.config import describe_errors, validate

router = APIRouter(prefix="/runs", tags=["runs"])
RunId = Annotated[int, Path(ge=1, le=2**62, description="Run id.")]
PRIVATE = {"spec_json", "plan_json", "token_hash"}


def public(run: Run, latest: dict[str, float] | None = None) -> RunPublic:
    return RunPublic(**run.model_dump(exclude=PRIVATE), latest=latest or {})


@router.post("", status_code=201, response_model=RunPublic)
def submit_run(
    engine: EngineDep,
    _: GuardedDep,
    request: Request,
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
    try:
        req = RunCreate.model_validate(body if "config" in body else {"config": body})
    except ValidationError as e:
        raise HTTPException(422, describe_errors(e.errors(), "body")) from None
    cfg = validate(req.config if req.name is None else {**req.config, "name": req.name})
    check_launchable(request, req.launcher)
    check_data(request, [cfg], req.launcher)
    run = runs.create_run(
        engine,
        cfg=cfg,
        priority=req.priority,
        sweep_id=req.sweep_id,
        phase=req.phase,
        launcher=req.launcher,
    )
    return public(run)


@router.get("", response_model=RunList)
def list_runs(
    engine: EngineDep,
    status: Annotated[RunStatus | None, Query(description="Filter by status.")] = None,
    sweep: Annotated[int | None, Query(ge=1, le=2**62, description="Filter by sweep id.")] = None,
    limit: Annotated[int, Query(ge=1, le=runs.LIST_LIMIT_MAX)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62, description="Kept for old clients.")] = 0,
    before_id: Annotated[
        int | None,
        Query(ge=1, le=2**62, description="Keyset: the page after one whose last id was this."),
    ] = None,
    after_id: Annotated[
        int | None,
        Query(
            ge=0, le=2**62, description="Keyset, oldest first: ids above this (0 = from the start)."
        ),
    ] = None,
    count: Annotated[bool, Query(description="Also count the runs that match.")] = True,
):
    """Runs, newest first (or oldest first from `after_id`). Page with `before_id`/`after_id`:
    `next_before_id`/`next_after_id` give the next page's key; no run is skipped or repeated
    while runs are being added. Both keys: the runs between them, oldest first. The response
    is built from plain rows (no per-row model)."""
    rows, total = runs.run_list(
        engine,
        status=status,
        sweep_id=sweep,
        limit=limit,
        offset=offset,
        before_id=before_id,
        after_id=after_id,
        count=count,
    )
    last = rows[-1]["id"] if len(rows) == limit else None
    # plain rows straight to JSON bytes (pydantic-core's encoder): no model per row
    return Response(
        to_json(
            {
                "items": rows,
                "total": total,
                "limit": limit,
                "offset": offset,
                "next_before_id": last if after_id is None else None,
                "next_after_id": last if after_id is not None else None,
            }
        ),
        media_type="application/json",
    )


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: RunId, engine: EngineDep):
    run = runs.get_run(engine, run_id=run_id)
    latest = runs.latest_for(engine, run_ids=[run_id]).get(run_id)
    return RunDetail(
        **public(run, latest).model_dump(),
        config=json.loads(run.spec_json),
        plan=json.loads(run.plan_json) if run.plan_json else None,
        result=results.get_result(engine, run_id=run_id),
    )


@router.post("/{run_id}/cancel", response_model=RunPublic)
def cancel_run(run_id: RunId, engine: EngineDep, pricing: PricingDep, _: GuardedDep):
    return public(lifecycle.cancel_run(engine, run_id=run_id, pricing=pricing))


@router.post("/{run_id}/requeue", response_model=RunPublic)
def requeue_run(run_id: RunId, engine: EngineDep, pricing: PricingDep, _: GuardedDep):
    """Queue a failed, lost or cancelled run again; it resumes from its checkpoint if it has
    one. The budget cap is checked again when it is claimed."""
    return public(lifecycle.requeue_run(engine, run_id=run_id, pricing=pricing))


@router.get("/{run_id}/metrics", response_model=MetricSeries)
def get_metrics(
    run_id: RunId,
    engine: EngineDep,
    name: Annotated[str, Query(min_length=1, max_length=100)] = "train/loss",
    max_points: Annotated[int, Query(ge=2, le=10_000)] = 500,
    after_step: Annotated[
        int | None,
        Query(
            ge=-1, le=2**62, description="Only the points after this step (a live chart's tail)."
        ),
    ] = None,
):
    """One metric's points by step, at most `max_points`: downsampled in the database to each
    span's min, max and last point, the first and last points always kept."""
    runs.get_run(engine, run_id=run_id)
    got = series.read(engine, run_id, name, max_points, after_step)
    points = [{"step": p[0], "tokens": p[1], "value": p[2]} for p in got.points]
    return MetricSeries(
        run_id=run_id,
        name=name,
        points=points,
        total=got.total,
        downsampled=len(points) < got.total,
    )


@router.get("/{run_id}/events", response_model=list[EventPublic])
def get_events(run_id: RunId, engine: EngineDep):
    runs.get_run(engine, run_id=run_id)
    return events.events(engine, run_id=run_id)


@router.get("/{run_id}/attempts", response_model=list[AttemptPublic])
def get_attempts(run_id: RunId, engine: EngineDep):
    """Every attempt of the run: where it ran, on which GPU (as provisioned), its share of it,
    the price and its source, how long, the outcome and what it cost."""
    runs.get_run(engine, run_id=run_id)
    return attempts.attempt_rows(engine, run_id=run_id)


def _open(run: runs.RunRef, what: str) -> None:
    """A finished run takes no more points or results: its trainer is late, or not its own."""
    if run.status in FINISHED:
        raise HTTPException(409, f"run {run.id} is {run.status}; it takes no more {what}")


def _within_budget(run: runs.RunRef, tokens: int | None, field: str) -> None:
    if tokens is not None and run.max_tokens and tokens > run.max_tokens:
        raise HTTPException(
            422, f"{field}: {tokens:,} is more than run {run.id}'s budget ({run.max_tokens:,})"
        )


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
    writer: WriterDep,
    kill_rule: KillRuleDep,
    run: RunCallerDep,
    request: Request,
):
    """Trainer-facing: a batch of points; a repeated point (same run, name, step) is harmless.
    The answer says whether to continue or stop (cancel, or the kill rule)."""
    _open(run, "points")
    # the body is parsed and validated in one pass from bytes (pydantic's JSON mode): this is
    # the ingest hot path, and FastAPI's dict-then-model route costs twice as much
    try:
        body = MetricsPost.model_validate_json(await request.body())
    except ValidationError as e:
        raise HTTPException(422, describe_errors(e.errors(), "body")) from None
    if len(body.points) > settings.max_points_per_post:
        raise HTTPException(
            413,
            f"{len(body.points)} points in one post; the limit is "
            f"{settings.max_points_per_post}: split the batch",
        )
    points = [(p.name, p.step, p.tokens, p.value) for p in body.points]
    # async: the request waits for its group commit without holding a worker thread
    fut = writer.enqueue(run.id, points, run.token_hash) if points else None
    inserted = await asyncio.wrap_future(fut) if fut else 0
    if points:
        action, reason = await run_in_threadpool(kill_rule.answer, engine, run, points)
    else:
        action, reason = stop_answer(run)
    return MetricsAck(
        accepted=len(points), duplicates=len(points) - inserted, action=action, reason=reason
    )


@router.post("/{run_id}/heartbeat", response_model=MetricsAck)
def post_heartbeat(
    run_id: RunId,
    engine: EngineDep,
    run: RunCallerDep,
    body: Heartbeat | None = None,
):
    """Trainer-facing: alive, at this step. The answer says whether to continue or stop (a
    finished run's trainer is told to stop)."""
    body = body or Heartbeat()
    if run.status in FINISHED:
        return MetricsAck(
            accepted=0, duplicates=0, action="stop", reason=f"run {run.id} is {run.status}"
        )
    _within_budget(run, body.tokens, "tokens")
    try:
        action, reason = lifecycle.heartbeat(
            engine,
            run_id=run.id,
            step=body.step,
            tokens=body.tokens,
            attempt=body.attempt,
            token_hash=run.token_hash,
            fenced=True,
        )
    except PermissionError as e:
        raise HTTPException(403, str(e)) from None
    return MetricsAck(accepted=0, duplicates=0, action=action, reason=reason)


@router.post("/{run_id}/result", response_model=RunPublic)
def post_result(
    run_id: RunId,
    engine: EngineDep,
    settings: SettingsDep,
    pricing: PricingDep,
    run: RunCallerDep,
    body: Annotated[ResultDoc, Body()],
):
    """Trainer-facing: the run's final metrics.json (docs/metrics.md; its schema is this
    body's, checked whole before it is stored). The run's state follows its exit; a result for
    a run that was never launched (an import by the admin) is its own exit."""
    _open(run, "results")
    metrics = body.model_dump(mode="json", exclude_unset=True)
    try:
        doc = check_result(metrics)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    _within_budget(run, doc.training.tokens_seen if doc.training else None, "training.tokens_seen")
    try:
        stored = results.store_result(engine, run_id=run.id, metrics=metrics)
    except ValueError as e:  # NaN/inf inside an untyped part of the document
        raise HTTPException(422, f"result: {e}") from None
    if run.status == "queued":
        lifecycle.apply_exit(
            engine,
            run_id=run.id,
            code=doc.run.exit_code or 0,
            max_attempts=settings.max_attempts,
            pricing=pricing,
            log="the imported result",
            metrics=metrics,
        )
        stored = runs.get_run(engine, run_id=run.id)
    return public(stored)


@router.post("/{run_id}/exit")
def report_exit(
    run_id: RunId,
    engine: EngineDep,
    settings: SettingsDep,
    pricing: PricingDep,
    run: RunCallerDep,
    body: Annotated[ExitReport, Body()],
) -> dict:
    """How a run's trainer ended (a worker reports it); the run moves on as under the local
    launcher."""
    if run.status not in ("launching", "running", "succeeded", "killed", "failed", "cancelled"):
        raise HTTPException(409, f"run {run_id} is {run.status}; nothing to settle")
    lifecycle.apply_exit(
        engine,
        run_id=run_id,
        code=body.code,
        max_attempts=settings.max_attempts,
        pricing=pricing,
        log="the worker's train.log",
        metrics=results.get_result(engine, run_id=run_id),
    )
    return {"run_id": run_id, "status": runs.get_run(engine, run_id=run_id).status}


JOB_LOG_TIMEOUT_S = 60.0


@router.get("/{run_id}/log", response_class=Response)
async def get_log(
    run_id: RunId,
    request: Request,
    engine: EngineDep,
    tail: Annotated[int, Query(ge=1, le=100_000)] = 200,
):
    """The last lines of the run's train.log (local, docker and worker launchers); for a cloud
    job, whose log stays on its VM, the job's own log fetched from SkyPilot on demand."""
    run = await run_in_threadpool(runs.get_run, engine, run_id=run_id)
    path = pathlib.Path(run.run_dir or "") / "train.log"
    if run.run_dir and "://" not in run.run_dir and path.is_file():
        lines = path.read_text(errors="replace").splitlines()[-tail:]
        return Response("\n".join(lines) + "\n", media_type="text/plain")
    sky = getattr(request.app.state, "sky_launcher", None)
    if run.launcher != "skypilot" or sky is None or not run.backend_id:
        return Response("", media_type="text/plain")
    try:
        text = await asyncio.wait_for(
            run_in_threadpool(sky.job_log, run.backend_id, tail), JOB_LOG_TIMEOUT_S
        )
    except Exception as e:  # SkyPilot's API server down, a job it no longer knows
        text = (
            f"pax could not fetch SkyPilot job {run.backend_id}'s log ({type(e).__name__}: "
            f"{e}); on the service's host: sky jobs logs {run.backend_id} --no-follow\n"
        )
    return Response(text or "", media_type="text/plain")
