"""The API's request and response shapes. A run's public fields come from the ledger's
`RunBase`, so the table and the API never list them twice."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic import Field as PField

from runner.ledger.models import RunBase, Strict


class RunCreate(Strict):
    config: dict[str, Any] = PField(description="A train config (trainer.config.TrainConfig).")
    name: str | None = PField(None, min_length=1, max_length=100)
    priority: int = PField(0, ge=-1000, le=1000, description="Higher runs first.")
    sweep_id: int | None = PField(None, ge=1, le=2**62)
    phase: str | None = PField(None, max_length=50)


class RunPublic(RunBase):
    id: int
    latest: dict[str, float] = {}


class RunDetail(RunPublic):
    config: dict[str, Any]
    plan: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


class RunList(BaseModel):
    items: list[RunPublic]
    total: int
    limit: int
    offset: int


class Point(Strict):
    step: int = PField(ge=0, le=2**62)
    tokens: int = PField(ge=0, le=2**62)
    name: str = PField(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_./-]+$")
    # NaN and inf are refused (a 422 saying "finite number"); the trainer never sends them.
    # A constraint, not a Python validator: this model is on the ingest hot path.
    value: float = PField(allow_inf_nan=False)


class MetricsPost(Strict):
    points: list[Point] = PField(min_length=0)


class MetricsAck(BaseModel):
    accepted: int
    duplicates: int
    action: Literal["continue", "stop"]
    reason: str | None = None


class Heartbeat(Strict):
    step: int | None = PField(None, ge=0, le=2**62)
    tokens: int | None = PField(None, ge=0, le=2**62)
    attempt: int | None = PField(
        None,
        ge=1,
        le=10_000,
        description="The trainer's own attempt count (resumes of this run directory).",
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
    report_dir: str | None
    budget_usd: float | None
    created_at: float
    updated_at: float
    runs: dict[str, int] = {}


class PromoteRequest(Strict):
    cells: list[str] | None = None
    force: bool = False


class ClaimRequest(Strict):
    worker: str = PField(
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


class ExitReport(Strict):
    code: int = PField(ge=-255, le=255, description="The trainer's exit code.")
