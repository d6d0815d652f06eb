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


@router.get("/badge.svg", response_class=Response)
def badge(engine: EngineDep, sweep: int | None = None) -> Response:
    """A status/cost badge from the ledger, for a README: all runs, or one sweep."""
    from html import escape

    with engine.connect() as conn:
        if sweep is None:
            row = conn.exec_driver_sql(
                "SELECT COUNT(*), SUM(status = 'running'), COALESCE(SUM(cost_usd), 0), NULL, "
                "'runs' FROM runs"
            ).first()
        else:
            row = conn.exec_driver_sql(
                "SELECT COUNT(r.id), SUM(r.status = 'running'), COALESCE(SUM(r.cost_usd), 0), "
                "s.budget_usd, s.phase FROM sweeps s LEFT JOIN runs r ON r.sweep_id = s.id "
                "WHERE s.id = ? GROUP BY s.id",
                (sweep,),
            ).first()
    if row is None:
        return Response(status_code=404, content=f"no sweep {sweep}")
    n, running, cost, budget, phase = row
    label = f"pax sweep {sweep}" if sweep is not None else "pax"
    value = f"{phase} · {n} runs ({running or 0} running) · ${cost:.2f}"
    if budget:
        value += f" / ${budget:.0f}"
    lw, vw = 7 * len(label) + 12, 7 * len(value) + 12
    color = "#e05d44" if budget and cost > budget else "#2f6fb0"
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lw + vw}" height="20" role="img" '
        f'aria-label="{escape(label)}: {escape(value)}"><rect width="{lw}" height="20" '
        f'fill="#555"/><rect x="{lw}" width="{vw}" height="20" fill="{color}"/><g '
        f'fill="#fff" font-family="Verdana,sans-serif" font-size="11"><text x="6" y="14">'
        f'{escape(label)}</text><text x="{lw + 6}" y="14">{escape(value)}</text></g></svg>'
    )
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})
