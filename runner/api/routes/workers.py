"""Pull-based capacity: `pax worker` claims queued runs over HTTP (and reports their exits to
/runs/{id}/exit)."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, Response

from runner.api.deps import EngineDep, GuardedDep, PricingDep, SettingsDep
from runner.api.schemas import Claim, ClaimRequest
from runner.cost import budget_refusal
from runner.ledger.attempts import Placement
from runner.ledger.lifecycle import claim_queued

router = APIRouter(tags=["workers"])


@router.post("/claim", response_model=Claim, responses={204: {"description": "queue empty"}})
def claim(
    body: ClaimRequest,
    engine: EngineDep,
    settings: SettingsDep,
    pricing: PricingDep,
    _: GuardedDep,
):
    """Atomically take the next queued run (priority, then age) for a worker; 204 when the
    queue is empty. Takes the worker token (or the admin's); the answer carries the run's own
    token, for its trainer."""
    place = Placement(
        accelerator=body.accelerator, spot=body.spot, gpus=body.gpus, device=body.device
    )
    try:
        got = claim_queued(
            engine,
            limit=1,
            launcher=f"worker:{body.worker}",
            kinds=("worker",),
            placement=place,
            pricing=pricing,
            refuse=lambda run: budget_refusal(engine, pricing, run, body.accelerator),
            running=f"started by worker {body.worker}",  # one transaction, one commit
        )
    except ValueError as e:  # a GPU without a price: nothing is claimed on it
        raise HTTPException(422, f"accelerator: {e}") from None
    if not got:
        return Response(status_code=204)
    run, token = got[0]
    return Claim(
        run_id=run.id,
        name=run.name,
        attempt=run.attempt,
        run_token=token,
        config=json.loads(run.spec_json),
        heartbeat_s=settings.heartbeat_s,
    )
