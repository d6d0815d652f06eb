"""/healthz: the service answers and its ledger reads; which database and which ledger (its id
names its bucket: pax-<id>), and whether this service runs the scheduler (one of several
replicas on PostgreSQL does), and whether NVIDIA MPS serves packed runs (and if not, why)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from runner.api.deps import EngineDep
from runner.ledger.runs import status_counts

router = APIRouter(tags=["service"])


@router.get("/healthz")
def healthz(engine: EngineDep, request: Request) -> dict:
    sched = getattr(request.app.state, "scheduler", None)
    role = "off" if sched is None else ("leader" if sched.leading else "standby")
    return {
        "ok": True,
        "runs": status_counts(engine),
        "database": engine.dialect.name,
        "ledger_id": request.app.state.ledger_id,
        "scheduler": role,
        # NVIDIA MPS for packed runs: running, found, off, absent or failed, and why
        "mps": mps.state if (mps := getattr(request.app.state, "mps", None)) else {"state": "off"},
    }
