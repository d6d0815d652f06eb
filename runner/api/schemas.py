"""The API's request and response shapes. A run's public fields come from the ledger's
`RunBase`, so the table and the API never list them twice."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic import Field as PField

from runner.ledger.models import RunBase, Strict, whole
from trainer.config import Name

# A plan in a request body, as /sweeps and /cloud/forecast read it: YAML text or a JSON object
# (read from the raw body, so the document says it here).
PLAN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}

Launch = Literal["local", "docker", "skypilot", "worker"]


class RunCreate(Strict):
    config: dict[str, Any] = PField(description="A train config (trainer.config.TrainConfig).")
    name: Name | None = None
    priority: whole(-1000, 1000) = PField(0, description="Higher runs first.")
    sweep_id: whole(1, 2**62) | None = None
    phase: Name | None = None
    launcher: Launch | None = PField(
        None,
        description="Where it trains: the service's own launcher (unset), a worker, or "
        "SkyPilot (a service with PAX_SKY=true).",
    )


class RunPublic(RunBase):
    id: int
    latest: dict[str, float] = {}


class RunDetail(RunPublic):
    config: dict[str, Any]
    plan: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


class RunList(BaseModel):
    items: list[RunPublic]
    total: int | None = PField(description="Runs matching the filters (null with count=false).")
    limit: int
    offset: int
    next_before_id: int | None = PField(None, description="before_id of the next page, if any.")
    next_after_id: int | None = PField(None, description="after_id of the next page, if any.")


class AttemptPublic(BaseModel):
    run_id: int
    attempt: int
    launcher: str | None
    backend_id: str | None
    accelerator: str | None = PField(description="The GPU it ran on (None: a CPU, free).")
    gpus: float = PField(
        description="The GPUs charged: a slot's share, or on a shared device its share by time."
    )
    device: str | None = PField(None, description="host:gpuN when runs share that GPU.")
    spot: bool
    price_per_hour: float | None
    price_source: str | None
    started_at: float
    ended_at: float | None
    outcome: str | None = PField(description="succeeded, preempted, lost, killed, ...")
    seconds: float
    gpu_hours: float
    cost_usd: float


class Point(Strict):
    # strict: "10" or true is a mistake to report, not a value to coerce
    step: whole(0, 2**62)
    tokens: whole(0, 2**62)
    name: str = PField(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_./-]+$")
    # NaN and inf are refused (a 422 saying "finite number"); the trainer never sends them.
    # A constraint, not a Python validator: this model is on the ingest hot path.
    value: float = PField(strict=True, allow_inf_nan=False)


class MetricsPost(Strict):
    points: list[Point] = PField(min_length=0)


class MetricsAck(BaseModel):
    accepted: int
    duplicates: int
    action: Literal["continue", "stop"]
    reason: str | None = None


class Heartbeat(Strict):
    step: whole(0, 2**62) | None = None
    tokens: whole(0, 2**62) | None = None
    attempt: whole(1, 10_000) | None = PField(
        None, description="The trainer's own attempt count (resumes of this run directory)."
    )


class MetricSeries(BaseModel):
    run_id: int
    name: str
    points: list[dict[str, int | float]]
    total: int
    downsampled: bool


class EventPublic(BaseModel):
    id: int
    run_id: int | None
    sweep_id: int | None
    time: float
    kind: str
    from_status: str | None
    to_status: str | None
    reason: str | None
    data: dict[str, Any] | None


class SweepPublic(BaseModel):
    id: int
    name: str
    kind: str
    phase: str
    status: str
    paused_reason: str | None = PField(
        None, description="Why its launches are held (status paused): the fix, then resume."
    )
    report_dir: str | None
    budget_usd: float | None
    created_at: float
    updated_at: float
    runs: dict[str, int] = {}


class PromoteRequest(Strict):
    cells: list[str] | None = None
    force: bool = False


class ClaimRequest(Strict):
    worker: Name = PField(description="The worker's name (host, GPU index...).")
    accelerator: str | None = PField(
        None,
        max_length=40,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="The worker's GPU (priced from the table, e.g. H100); unset = a CPU.",
    )
    spot: bool = PField(False, strict=True, description="A spot (preemptible) machine.")
    gpus: float = PField(
        1.0, gt=0, le=64, description="GPUs this slot is charged for, when no device is named."
    )
    device: str | None = PField(
        None,
        max_length=120,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="The GPU this slot trains on, unique across workers (host:gpuN): runs on "
        "one device split its cost by their time on it.",
    )


class Claim(BaseModel):
    run_id: int
    name: str
    attempt: int
    run_token: str
    config: dict[str, Any]
    heartbeat_s: float


class ExitReport(Strict):
    code: whole(-255, 255) = PField(description="The trainer's exit code.")


class ErrorBody(BaseModel):
    """Every refusal: `detail` says what is wrong and what to do; `errors` lists each invalid
    field of a 422."""

    detail: str
    errors: list[dict[str, Any]] | None = None
