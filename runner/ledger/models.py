"""Ledger tables (SQLModel): the one source of the schema's shape. Alembic's migrations must
agree with these, indexes included (tests/runner/ledger/test_migrations.py checks it)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from annotated_types import Interval
from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic import Strict as PydanticStrict
from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, SQLModel


class RunStatus(StrEnum):
    QUEUED = "queued"
    LAUNCHING = "launching"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"
    CANCELLED = "cancelled"
    LOST = "lost"


STATUSES = tuple(s.value for s in RunStatus)
ACTIVE = (RunStatus.LAUNCHING.value, RunStatus.RUNNING.value)
FINISHED = tuple(
    s.value for s in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.KILLED, RunStatus.CANCELLED)
)


class Strict(BaseModel):
    """Request bodies and plan files: an unknown field is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def _whole(v):
    # JSON has one number type: 3 and 3.0 are the same integer (JSON Schema says so, and
    # clients' serializers differ); a fraction, a string or a boolean is still refused
    return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**63 else v


def whole(ge: int, le: int):
    """An integer of a request body within [ge, le]: strict (no "3", no true), but 3.0 reads as
    3. The bounds sit inside the type, so its JSON schema says minimum and maximum."""
    return Annotated[int, PydanticStrict(), Interval(ge=ge, le=le), BeforeValidator(_whole)]


class Sweep(SQLModel, table=True):
    __tablename__ = "sweeps"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    kind: str = "plan"
    spec_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    status: str = "active"  # active, paused (a launch error a user must fix), done
    paused_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    phase: str = "ranking"
    report_dir: str | None = None
    budget_usd: float | None = None
    created_at: float
    updated_at: float


class RunBase(SQLModel):
    """A run's public fields: the table adds its secrets and documents, the API its latest
    metrics."""

    name: str
    spec_hash: str = Field(index=True)
    sweep_id: int | None = Field(default=None, foreign_key="sweeps.id", index=True)
    phase: str | None = None
    seed: int = 0
    priority: int = 0
    status: str = Field(default=RunStatus.QUEUED.value, index=True)
    attempt: int = 0
    launcher: str | None = None
    backend_id: str | None = None
    run_dir: str | None = None
    max_tokens: int = 0
    tokens_seen: int = 0
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    last_heartbeat: float | None = None
    exit_reason: str | None = Field(default=None, sa_type=Text)
    stop_reason: str | None = Field(
        default=None,
        sa_type=Text,
        description="Why the trainer was told to stop (a kill-rule verdict); the run ends "
        "when its exit arrives.",
    )
    gpu_hours: float = 0.0
    cost_usd: float = 0.0
    launcher_wanted: str | None = Field(
        default=None, description="The launcher this run asks for (None: the service's own)."
    )
    running_since: float | None = Field(
        default=None,
        description="When the current attempt was first seen running (a cloud job may wait "
        "for capacity long after its launch); start-up grace counts from here.",
    )
    cell: str | None = None
    axis: str | None = None
    is_baseline: bool = False
    not_before: float | None = Field(
        default=None,
        description="Not launched before this time: a launch that failed in a way that can "
        "pass (no capacity, a quota, the network) is retried with back-off.",
    )
    launch_errors: int = Field(
        default=0,
        sa_column_kwargs={"server_default": "0"},
        description="Launch errors in a row (the back-off grows with them; a launch resets it).",
    )


class Run(RunBase, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_queue", "status", "priority", "created_at"),
        # one run per cell and seed of a sweep phase: a restarted service never queues it twice
        Index(
            "ux_runs_cell",
            "sweep_id",
            "phase",
            "cell",
            "seed",
            unique=True,
            sqlite_where=text("sweep_id IS NOT NULL AND cell IS NOT NULL"),
            postgresql_where=text("sweep_id IS NOT NULL AND cell IS NOT NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    spec_json: str = Field(sa_column=Column(Text, nullable=False))
    plan_json: str | None = Field(
        default=None, sa_type=Text, description="The planner's architecture, stored at submit."
    )
    token_hash: str | None = None


class MetricPoint(SQLModel, table=True):
    """One value of one metric at one step; the key makes a repeated post harmless."""

    __tablename__ = "metric_points"
    __table_args__ = {"sqlite_with_rowid": False}
    run_id: int = Field(foreign_key="runs.id", primary_key=True)
    name: str = Field(primary_key=True)
    step: int = Field(primary_key=True)
    tokens: int
    value: float


class MetricBucket(SQLModel, table=True):
    """One metric's points in a span of `level` steps (runner.ledger.series.LEVELS): count, and
    the first, last, min and max point, so a long series is read at chart size without a scan."""

    __tablename__ = "metric_buckets"
    __table_args__ = {"sqlite_with_rowid": False}
    run_id: int = Field(foreign_key="runs.id", primary_key=True)
    name: str = Field(primary_key=True)
    level: int = Field(primary_key=True)  # steps per bucket
    bucket: int = Field(primary_key=True)  # step // level
    n: int
    first_step: int
    first_tokens: int
    first_value: float
    last_step: int
    last_tokens: int
    last_value: float
    min_step: int
    min_tokens: int
    min_value: float
    max_step: int
    max_tokens: int
    max_value: float


class LatestMetric(SQLModel, table=True):
    """The newest point per run and metric, so list pages never scan history."""

    __tablename__ = "latest_metrics"
    __table_args__ = {"sqlite_with_rowid": False}
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
    reason: str | None = Field(default=None, sa_type=Text)
    data_json: str | None = Field(default=None, sa_type=Text)


class Attempt(SQLModel, table=True):
    """One attempt of a run: where it ran, on what, for how long, and what it cost. A run's
    gpu_hours and cost_usd are the sums of its attempts'."""

    __tablename__ = "attempts"
    __table_args__ = (Index("ux_attempts_run_attempt", "run_id", "attempt", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    attempt: int
    launcher: str | None = None
    backend_id: str | None = None
    accelerator: str | None = Field(default=None, description="The GPU actually provisioned.")
    gpus: float = Field(
        default=1.0,
        description="GPUs charged: 1, a slot's share of one, or on a shared device the "
        "time-weighted share it had there.",
    )
    device: str | None = Field(
        default=None, index=True, description="host:gpuN when runs share that GPU."
    )
    spot: bool = False
    resources: str | None = Field(default=None, sa_type=Text, description="As the cloud said.")
    price_per_hour: float | None = None
    price_source: str | None = None
    started_at: float
    ended_at: float | None = None
    outcome: str | None = None
    seconds: float = 0.0
    gpu_hours: float = 0.0
    cost_usd: float = 0.0


class LedgerInfo(SQLModel, table=True):
    """Facts about the ledger itself (its id)."""

    __tablename__ = "ledger_info"
    key: str = Field(primary_key=True)
    value: str = Field(sa_column=Column(Text, nullable=False))


class Result(SQLModel, table=True):
    __tablename__ = "results"
    run_id: int = Field(foreign_key="runs.id", primary_key=True)
    metrics_json: str = Field(sa_column=Column(Text, nullable=False))
    sample: bool = Field(default=False, description="Made from sample data (not WikiText-2).")
    created_at: float


class CloudWorker(SQLModel, table=True):
    """A warm GPU worker on SkyPilot (`pax cloud up`): one managed spot job running `pax worker
    --slots N` on one GPU, claiming runs until the queue has had nothing for it for a while.
    Its VM time, as SkyPilot's records show it while they are seen, is kept here so that a
    restart of the service loses none of the bill."""

    __tablename__ = "cloud_workers"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(
        index=True, description="`pax worker --name`: its runs' launcher is worker:<name>[-sN]."
    )
    accelerator: str
    spot: bool = True
    slots: int = 1
    idle_exit_s: float = 0.0
    status: str = Field(
        default="launching",
        index=True,
        description="launching (no job yet), pending (waiting for a VM), running, recovering, "
        "ended, failed or cancelled.",
    )
    reason: str | None = Field(default=None, sa_type=Text)
    backend_id: str | None = Field(default=None, description="SkyPilot's managed job id.")
    launch_errors: int = 0
    not_before: float | None = None
    down_requested: bool = False
    replaced_by: str | None = Field(
        default=None,
        description="The worker launched in its place (a refill, or a launch SkyPilot gave up).",
    )
    created_at: float
    provisioned_at: float | None = Field(
        default=None, description="When its VM was first seen (STARTING or later)."
    )
    ended_at: float | None = None
    recoveries: int = 0
    vm_seconds: float = 0.0
    price_per_hour: float | None = None
    price_source: str | None = None
    cost_usd: float = 0.0
