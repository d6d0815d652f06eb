"""Ledger tables (SQLModel) and the API's request/response shapes, split by role."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PField
from sqlmodel import Field, SQLModel

RunStatus = Literal[
    "queued", "launching", "running", "succeeded", "failed", "killed", "cancelled", "lost"
]
ACTIVE = ("launching", "running")
FINISHED = ("succeeded", "failed", "killed", "cancelled")


# ---------------------------------------------------------------- tables


class Sweep(SQLModel, table=True):
    __tablename__ = "sweeps"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    kind: str = "plan"
    spec_json: str = "{}"
    status: str = "active"
    phase: str = "ranking"
    report_dir: str | None = None
    budget_usd: float | None = None
    created_at: float
    updated_at: float


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    spec_json: str
    spec_hash: str = Field(index=True)
    sweep_id: int | None = Field(default=None, foreign_key="sweeps.id", index=True)
    phase: str | None = None
    seed: int = 0
    priority: int = 0
    status: str = Field(default="queued", index=True)
    attempt: int = 0
    launcher: str | None = None
    backend_id: str | None = None
    run_dir: str | None = None
    token_hash: str | None = None
    max_tokens: int = 0
    tokens_seen: int = 0
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    last_heartbeat: float | None = None
    exit_reason: str | None = None
    gpu_hours: float = 0.0
    cost_usd: float = 0.0
    cell: str | None = None
    axis: str | None = None
    is_baseline: bool = False


class MetricPoint(SQLModel, table=True):
    __tablename__ = "metric_points"
    run_id: int = Field(foreign_key="runs.id", primary_key=True)
    name: str = Field(primary_key=True)
    step: int = Field(primary_key=True)
    tokens: int
    value: float


class LatestMetric(SQLModel, table=True):
    __tablename__ = "latest_metrics"
    run_id: int = Field(foreign_key="runs.id", primary_key=True)
    name: str = Field(primary_key=True)
    step: int
    tokens: int
    value: float


class Event(SQLModel, table=True):
    __tablename__ = "events"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="runs.id", index=True)
    sweep_id: int | None = Field(default=None, foreign_key="sweeps.id", index=True)
    time: float
    kind: str
    from_status: str | None = None
    to_status: str | None = None
    reason: str | None = None
    data_json: str | None = None


class Result(SQLModel, table=True):
    __tablename__ = "results"
    run_id: int = Field(foreign_key="runs.id", primary_key=True)
    metrics_json: str
    created_at: float


# ---------------------------------------------------------------- API shapes


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCreate(Strict):
    config: dict[str, Any] = PField(description="A train config (trainer.config.TrainConfig).")
    name: str | None = PField(None, min_length=1, max_length=100)
    priority: int = PField(0, ge=-1000, le=1000, description="Higher runs first.")
    sweep_id: int | None = None
    phase: str | None = PField(None, max_length=50)


class RunPublic(BaseModel):
    id: int
    name: str
    status: str
    sweep_id: int | None
    phase: str | None
    seed: int
    priority: int
    attempt: int
    launcher: str | None
    backend_id: str | None
    run_dir: str | None
    spec_hash: str
    max_tokens: int
    tokens_seen: int
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    last_heartbeat: float | None
    exit_reason: str | None
    gpu_hours: float
    cost_usd: float
    cell: str | None = None
    axis: str | None = None
    is_baseline: bool = False
    latest: dict[str, float] = {}


class RunDetail(RunPublic):
    config: dict[str, Any]
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
    step: int | None = PField(None, ge=0)
    tokens: int | None = PField(None, ge=0)
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
