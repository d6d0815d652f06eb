"""/healthz: the service answers and its ledger reads."""

from __future__ import annotations

from fastapi import APIRouter

from runner.api.deps import EngineDep
from runner.ledger import queries

router = APIRouter(tags=["service"])


@router.get("/healthz")
def healthz(engine: EngineDep) -> dict:
    return {"ok": True, "runs": queries.status_counts(engine)}
