"""/healthz and /results.csv."""

from __future__ import annotations

import json

from fastapi import APIRouter, Response
from sqlalchemy import text

from runner import aggregate
from runner.api.deps import EngineDep

router = APIRouter(tags=["service"])


@router.get("/healthz")
def healthz(engine: EngineDep) -> dict:
    with engine.connect() as conn:
        counts = dict(conn.execute(text("SELECT status, COUNT(*) FROM runs GROUP BY status")).all())
    return {"ok": True, "runs": counts}


@router.get("/results.csv", response_class=Response)
def results_csv(engine: EngineDep) -> Response:
    """One row per run: config knobs, planned architecture, status, final metrics, cost."""
    from trainer.config import TrainConfig

    rows = []
    with engine.connect() as conn:
        data = conn.execute(
            text(
                "SELECT r.id, r.name, r.sweep_id, r.phase, r.status, r.spec_json, r.tokens_seen, "
                "r.gpu_hours, r.cost_usd, r.exit_reason, r.run_dir, res.metrics_json FROM runs r "
                "LEFT JOIN results res ON res.run_id = r.id ORDER BY r.id"
            )
        ).all()
    plans: dict[str, dict] = {}
    for rid, name, sweep, phase, status, spec, tokens, gpu_h, cost, reason, run_dir, mjson in data:
        cfg = json.loads(spec)
        metrics = json.loads(mjson) if mjson else None
        key = json.dumps(cfg.get("model"), sort_keys=True)
        plan = (metrics or {}).get("plan")
        if plan is None:  # not finished yet: the planned architecture
            if key not in plans:
                plans[key] = TrainConfig.model_validate(cfg).plan().to_dict()
            plan = plans[key]
        rows.append(
            aggregate.row(
                config=cfg,
                plan=plan,
                metrics=metrics,
                run_id=rid,
                sweep_id=sweep,
                phase=phase,
                status=status,
                tokens_seen=tokens,
                gpu_hours=gpu_h,
                cost_usd=cost,
                exit_reason=reason,
                run_dir=run_dir,
                name=name,
            )
        )
    return Response(
        aggregate.to_csv(rows),
        media_type="text/csv",
        headers={"Content-Disposition": "attachment; filename=results.csv"},
    )
