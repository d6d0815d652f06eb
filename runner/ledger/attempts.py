"""Attempts: one row per try at a run, with where it ran, on what, for how long and what it cost.

An attempt begins when a launcher claims the run and ends when the run leaves an active state
(done, killed, lost, preempted, cancelled) or when the cloud recovers it onto new machines. Its
cost is the time it ran times the price of the GPU actually provisioned; a run's gpu_hours and
cost_usd are the sums over its attempts. When several runs share one GPU (slots), an attempt
names the device, and each moment of that GPU is split evenly between the attempts on it then:
a run alone pays the whole GPU, two together pay half each, so the GPU's time is charged once.
These functions work in the caller's transaction (runner.ledger.crud opens it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from sqlmodel import Session, or_, select

from runner.ledger.models import Attempt, Run


@dataclass(frozen=True)
class Placement:
    """Where an attempt runs, as far as its launcher knows when it claims the run."""

    accelerator: str | None = None  # None: a CPU, free
    spot: bool = False
    gpus: float = 1.0  # a fixed share of one GPU (unused when `device` is named)
    device: str | None = None  # host:gpuN: shared with whatever else runs there, by time


@dataclass(frozen=True)
class Usage:
    """What an attempt used, as its launcher observed it (a cloud's job duration and the
    resources it provisioned); unknown fields are None."""

    seconds: float | None = None
    accelerator: str | None = None
    spot: bool | None = None
    resources: dict | None = None


class Prices(Protocol):
    """runner.launch.cost.Pricing, as the ledger needs it."""

    def price_for(self, accelerator: str | None, spot: bool) -> tuple[float, str]: ...


def current(s: Session, run: Run) -> Attempt | None:
    return s.exec(
        select(Attempt).where(Attempt.run_id == run.id, Attempt.attempt == run.attempt)
    ).first()


def begin(
    s: Session,
    run: Run,
    *,
    attempt: int,
    launcher: str,
    placement: Placement,
    prices: Prices | None,
    t: float,
    backend_id: str | None = None,
) -> Attempt:
    price, source = (
        prices.price_for(placement.accelerator, placement.spot)
        if prices is not None
        else (0.0, "unpriced")
    )
    row = Attempt(
        run_id=run.id,
        attempt=attempt,
        launcher=launcher,
        backend_id=backend_id,
        accelerator=placement.accelerator,
        gpus=placement.gpus,
        device=placement.device,
        spot=placement.spot,
        price_per_hour=price,
        price_source=source,
        started_at=t,
    )
    s.add(row)
    return row


def observe(s: Session, run: Run, usage: Usage, prices: Prices | None) -> None:
    """The launcher learned what the current attempt runs on (a cloud's provisioned GPU):
    record it, and price the attempt by it."""
    row = current(s, run)
    if row is None or row.ended_at is not None:
        return
    if usage.accelerator is not None:
        row.accelerator = usage.accelerator
    if usage.spot is not None:
        row.spot = usage.spot
    if usage.resources is not None:
        row.resources = json.dumps(usage.resources, default=str)
    if prices is not None and (usage.accelerator is not None or usage.spot is not None):
        row.price_per_hour, row.price_source = prices.price_for(row.accelerator, row.spot)
    s.add(row)


def end(
    s: Session,
    run: Run,
    *,
    t: float,
    outcome: str,
    prices: Prices | None,
    usage: Usage | None = None,
) -> Attempt | None:
    """Close the current attempt and charge it to the run: its own duration (or the one the
    launcher measured) times its GPU share times its price."""
    row = current(s, run)
    if row is None or row.ended_at is not None:
        return None
    if usage is not None:
        observe(s, run, usage, prices)
    row.ended_at = t
    row.outcome = outcome
    row.seconds = max(
        0.0, usage.seconds if usage and usage.seconds is not None else t - row.started_at
    )
    if row.device:
        row.gpus = shared_seconds(s, row, t) / row.seconds if row.seconds else 1.0
    row.gpu_hours = row.seconds / 3600 * row.gpus if row.accelerator else 0.0
    row.cost_usd = row.gpu_hours * (row.price_per_hour or 0.0)
    run.gpu_hours = (run.gpu_hours or 0.0) + row.gpu_hours
    run.cost_usd = (run.cost_usd or 0.0) + row.cost_usd
    s.add(row)
    return row


def running_cost(s: Session, run: Run, t: float) -> float:
    """What the run has cost so far, its open attempt included (for cost limits)."""
    row = current(s, run)
    open_cost = 0.0
    if row is not None and row.ended_at is None and row.accelerator:
        gpu_s = shared_seconds(s, row, t) if row.device else (t - row.started_at) * row.gpus
        open_cost = gpu_s / 3600 * (row.price_per_hour or 0.0)
    return (run.cost_usd or 0.0) + open_cost


def shared_seconds(s: Session, row: Attempt, t: float) -> float:
    """GPU-seconds of `row` on its device from its start to `t`: every stretch of time split
    evenly between the attempts on that device then (still-open ones count as running)."""
    a = row.started_at
    others = s.exec(
        select(Attempt).where(
            Attempt.device == row.device,
            Attempt.id != row.id,
            Attempt.started_at < t,
            or_(Attempt.ended_at.is_(None), Attempt.ended_at > a),
        )
    ).all()
    spans = [(max(o.started_at, a), min(o.ended_at if o.ended_at else t, t)) for o in others]
    edges = sorted({a, t, *(x for span in spans for x in span if a <= x <= t)})
    total = 0.0
    for lo, hi in zip(edges, edges[1:], strict=False):
        mid = (lo + hi) / 2
        total += (hi - lo) / (1 + sum(1 for x, y in spans if x <= mid < y))
    return total
