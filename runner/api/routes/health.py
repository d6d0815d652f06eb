"""/healthz and /results.csv."""

from __future__ import annotations

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
    """One row per run: config knobs, planned architecture, status, final metrics, cost (the
    same columns as scripts/aggregate_results.py)."""
    from runner.report import frame_from_ledger

    df, _ = frame_from_ledger(engine)
    body = (
        df.reindex(columns=aggregate.COLUMNS).to_csv(index=False)
        if not df.empty
        else aggregate.to_csv([])
    )
    return Response(
        body,
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
