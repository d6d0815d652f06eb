"""/results.csv (one row per run) and /badge.svg (a sweep's status and cost, for a README)."""

from __future__ import annotations

import json
from html import escape
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import StreamingResponse

from runner.api.deps import EngineDep
from runner.ledger.models import RunStatus
from runner.ledger.runs import run_list
from runner.ledger.sweeps import badge_numbers
from runner.study.results import ledger_rows, to_csv

router = APIRouter(tags=["results"])


PAGE = 500  # rows a streamed export holds at a time


@router.get("/results.csv", response_class=Response)
def results_csv(
    engine: EngineDep, sweep: Annotated[int | None, Query(ge=1, le=2**62)] = None
) -> Response:
    """One row per run: config knobs, planned architecture, status, final metrics, cost (the
    same columns as scripts/aggregate_results.py). Streamed a page of runs at a time."""

    def pages():
        after, head = 0, True
        while True:
            rows = ledger_rows(engine, sweep, after_id=after, limit=PAGE)
            if not rows and not head:
                return
            text = to_csv(rows)
            yield text if head else text.split("\n", 1)[1]  # one header line
            head = False
            if len(rows) < PAGE:
                return
            after = rows[-1]["run_id"]

    return StreamingResponse(
        pages(),
        media_type="text/csv",
        headers={"Content-Disposition": "attachment; filename=results.csv"},
    )


@router.get("/runs.ndjson", response_class=Response)
def runs_ndjson(
    engine: EngineDep,
    status: Annotated[RunStatus | None, Query()] = None,
    sweep: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    """Every run (its public fields and latest metrics), one JSON document per line, oldest
    first, streamed a page at a time: for tools that want everything."""

    def lines():
        after = 0
        while True:
            rows, _ = run_list(
                engine, status=status, sweep_id=sweep, after_id=after, limit=PAGE, count=False
            )
            if rows:
                yield "".join(json.dumps(r) + "\n" for r in rows)
            if len(rows) < PAGE:
                return
            after = rows[-1]["id"]

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/badge.svg", response_class=Response)
def badge(
    engine: EngineDep, sweep: Annotated[int | None, Query(ge=1, le=2**62)] = None
) -> Response:
    """A status/cost badge from the ledger, for a README: all runs, or one sweep."""
    n = badge_numbers(engine, sweep_id=sweep)
    if n is None:
        raise HTTPException(404, f"sweep {sweep} does not exist")
    label = f"pax sweep {sweep}" if sweep is not None else "pax"
    value = f"{n['phase']} · {n['runs']} runs ({n['running'] or 0} running) · ${n['cost_usd']:.2f}"
    if n["budget_usd"]:
        value += f" / ${n['budget_usd']:.0f}"
    lw, vw = 7 * len(label) + 12, 7 * len(value) + 12
    color = "#e05d44" if n["budget_usd"] and n["cost_usd"] > n["budget_usd"] else "#2f6fb0"
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lw + vw}" height="20" role="img" '
        f'aria-label="{escape(label)}: {escape(value)}"><rect width="{lw}" height="20" '
        f'fill="#555"/><rect x="{lw}" width="{vw}" height="20" fill="{color}"/><g '
        f'fill="#fff" font-family="Verdana,sans-serif" font-size="11"><text x="6" y="14">'
        f'{escape(label)}</text><text x="{lw + 6}" y="14">{escape(value)}</text></g></svg>'
    )
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})
