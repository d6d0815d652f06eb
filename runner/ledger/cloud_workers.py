"""Warm GPU workers on SkyPilot: their rows (one per worker job), what SkyPilot's records said of
them as they were seen, and the bill they make: VM time at the catalog price, split into what
the runs in their slots were charged and the idle rest, plus the jobs controller's VM."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from runner.ledger.attempts import shared_seconds
from runner.ledger.db import write_session
from runner.ledger.events import event, now
from runner.ledger.models import Attempt, CloudWorker

LIVE = ("launching", "pending", "running", "recovering")
ENDED = ("ended", "failed", "cancelled")
W = CloudWorker.__table__.c


def add_workers(
    engine: Engine,
    *,
    accelerator: str,
    spot: bool,
    count: int,
    slots: int,
    idle_exit_s: float,
    price: tuple[float, str],
) -> list[CloudWorker]:
    """`count` workers waiting to be launched (the pool launches them off the request)."""
    t = now()
    out = []
    with write_session(engine) as s:
        for _ in range(count):
            w = CloudWorker(
                name="pending",
                accelerator=accelerator,
                spot=spot,
                slots=slots,
                idle_exit_s=idle_exit_s,
                created_at=t,
                price_per_hour=price[0],
                price_source=price[1],
            )
            s.add(w)
            s.flush()
            w.name = f"pax-w{w.id}"  # unique in the ledger: its runs say worker:<name>[-sN]
            s.add(event(kind="cloud", reason=f"{w.name}: {accelerator} x {slots} slots asked"))
            out.append(w)
        s.commit()
        for w in out:
            s.refresh(w)
    return out


def workers(engine: Engine, *, live_only: bool = False) -> list[CloudWorker]:
    q = select(CloudWorker).order_by(W.id)
    if live_only:
        q = q.where(W.status.in_(LIVE))
    with Session(engine) as s:
        return list(s.scalars(q).all())


def update_worker(
    engine: Engine, *, worker_id: int, note: str | None = None, **fields
) -> CloudWorker | None:
    """Set fields; a status change is an event, and so is a `note` (a launch error). A
    worker that has ended stays ended."""
    with write_session(engine) as s:
        w = s.get(CloudWorker, worker_id)
        if w is None:
            return None
        to = fields.get("status")
        if w.status in ENDED and to is not None and to != w.status:
            return w
        if to is not None and to != w.status:
            why = fields.get("reason") or to
            s.add(event(kind="cloud", reason=f"{w.name}: {w.status} -> {to} ({why})"))
        elif note:
            s.add(event(kind="cloud", reason=f"{w.name}: {note}"))
        for k, v in fields.items():
            setattr(w, k, v)
        w.cost_usd = w.vm_seconds / 3600 * (w.price_per_hour or 0.0)
        s.add(w)
        s.commit()
        s.refresh(w)
        return w


def have_claimed(engine: Engine, names: list[str]) -> set[str]:
    """Which of these workers have claimed a run (an attempt launched by `worker:<name>` or one
    of its slots `worker:<name>-sN`): a worker up that has claimed nothing is still starting."""
    if not names:
        return set()
    A = Attempt.__table__.c
    got = set()
    with engine.connect() as conn:
        for name in names:
            hit = conn.execute(
                select(A.id)
                .where((A.launcher == f"worker:{name}") | A.launcher.like(f"worker:{name}-s%"))
                .limit(1)
            ).first()
            if hit is not None:
                got.add(name)
    return got


def runs_share(s: Session, w: CloudWorker, t: float) -> float:
    """What the runs in the worker's slots were charged for its GPU (open attempts to `t`)."""
    rows = s.scalars(select(Attempt).where(Attempt.device.like(f"{w.name}:%"))).all()
    total = 0.0
    for a in rows:
        if a.ended_at is not None:
            total += a.cost_usd
        else:
            total += shared_seconds(s, a, t) / 3600 * (a.price_per_hour or 0.0)
    return total


def controller_seconds(
    spans: list[tuple[float, float | None]], t: float, autostop_s: float
) -> float:
    """The jobs controller's VM time: up from the first managed job's launch while any job
    lives (`spans`: each job's launch and end, None while it lives), and `autostop_s` after the
    last ends (SkyPilot stops an idle controller then): the union of those stretches, so jobs
    launched together share one controller."""
    ordered = sorted((a, (b + autostop_s) if b is not None else t) for a, b in spans)
    total, lo, hi = 0.0, None, None
    for a, b in ordered:
        b = min(b, t)
        if hi is None or a > hi:
            total += (hi - lo) if hi is not None else 0.0
            lo, hi = a, b
        else:
            hi = max(hi, b)
    return total + ((hi - lo) if hi is not None else 0.0)


def bill(engine: Engine, *, controller: tuple[float, float, str], t: float | None = None) -> dict:
    """The pool's bill: each worker's VM time and cost, the part its runs were charged and
    the idle rest, and the controller's VM as overhead (`controller`: $/h, autostop s,
    where that price comes from). Runs + idle + controller = the total."""
    t = now() if t is None else t
    usd_h, autostop_s, source = controller
    with Session(engine) as s:
        rows = list(s.scalars(select(CloudWorker).order_by(W.id)).all())
        out = []
        for w in rows:
            runs = runs_share(s, w, t)
            out.append(
                {
                    "id": w.id,
                    "name": w.name,
                    "status": w.status,
                    "reason": w.reason,
                    "backend_id": w.backend_id,
                    "accelerator": w.accelerator,
                    "spot": w.spot,
                    "slots": w.slots,
                    "recoveries": w.recoveries,
                    "replaced_by": w.replaced_by,
                    "vm_seconds": w.vm_seconds,
                    "price_per_hour": w.price_per_hour,
                    "price_source": w.price_source,
                    "vm_usd": w.cost_usd,
                    "runs_usd": runs,
                    "idle_usd": max(0.0, w.cost_usd - runs),
                }
            )
    ctl_s = controller_seconds([(w.created_at, w.ended_at) for w in rows], t, autostop_s)
    ctl_usd = ctl_s / 3600 * usd_h
    vm = sum(w["vm_usd"] for w in out)
    return {
        "workers": out,
        "vm_usd": vm,
        "runs_usd": sum(w["runs_usd"] for w in out),
        "idle_usd": sum(w["idle_usd"] for w in out),
        "controller": {"seconds": ctl_s, "usd": ctl_usd, "usd_per_h": usd_h, "source": source},
        "total_usd": vm + ctl_usd,
    }
