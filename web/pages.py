"""The dashboard: Jinja pages over the ledger, served by the same FastAPI app.

Pages render completely on the server (tables and charts work with JavaScript off); a small
script polls HTML fragments to update them live, and fragments answer 304 while nothing
changed. Charts are inline SVG from `web.charts`, cached per run (on the app) and invalidated
whenever the run gets a new point or changes state. Every asset is served by the app (no CDN).
This package reads through runner's read functions; the only writes are the API's own admin
routes, called by the page's script with a token the user typed (web/static/live.js).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from runner.cost import sweep_cost, what_if_accelerator
from runner.ledger.attempts import cost_overview
from runner.ledger.errors import NotFound
from runner.ledger.events import events
from runner.ledger.lifecycle import REQUEUABLE
from runner.ledger.models import ACTIVE, STATUSES
from runner.ledger.results import has_sample_results, results_for
from runner.ledger.runs import (
    baseline_runs,
    changed_runs,
    run_detail,
    run_list,
    runs_version,
    version,
)
from runner.ledger.sweeps import get_sweep, sweep_runs, sweeps_overview
from runner.study import promotion
from runner.study.plan_spec import PHASE1
from runner.study.results import ledger_rows
from runner.study.stats import finalist_stats
from web import charts, compare, sweep_view
from web.render import (
    HERE,
    Id,
    an_id,
    bad_request,
    engine_of,
    etag_of,
    fresh,
    not_found,
    templates,
)
from web.series_cache import SeriesCache

router = APIRouter(include_in_schema=False)
router.include_router(compare.router)
STATIC = {"app.css": "text/css", "live.js": "text/javascript", "favicon.svg": "image/svg+xml"}


@router.get("/static/{name}")
def static(name: str):
    if name not in STATIC:
        raise HTTPException(404, f"no static file {name}")
    return FileResponse(
        HERE / "static" / name,
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=300"},
    )


def _filters(request: Request) -> dict:
    q = request.query_params
    sweep = q.get("sweep")
    return {
        "sweep": int(sweep) if an_id(sweep) else None,
        "phase": q.get("phase") or None,
        "status": q.get("status") if q.get("status") in STATUSES else None,
    }


def _selected(request: Request) -> list[int]:
    """The runs ticked for comparison (`sel=1,5`): the page's selection lives in its URL."""
    raw = (request.query_params.get("sel") or "").split(",")
    return [int(p) for p in raw if an_id(p.strip())][: compare.MAX_RUNS]


def run_rows(engine, f: dict, since: float | None = None) -> tuple[list[dict], int]:
    """The overview's rows: a page of the ledger's run list, with what the table shows of each
    (progress, speed, ETA, dev PPL, train loss)."""
    rows, total = run_list(
        engine, sweep_id=f["sweep"], phase=f["phase"], status=f["status"], since=since, limit=200
    )
    for r in rows:
        seen, mx, latest = r["tokens_seen"], r["max_tokens"], r["latest"]
        tps = latest.get("train/tokens_per_s")
        running = r["status"] == "running" and tps and mx > seen
        r.update(
            cell=r["cell"] or r["name"],
            progress=min(1.0, seen / mx) if mx else 0.0,
            tokens_per_s=tps,
            eta_s=(mx - seen) / tps if running else None,
            dev_ppl=latest.get("dev/word_ppl"),
            train_loss=latest.get("train/loss"),
        )
    return rows, total


@router.get("/", response_class=HTMLResponse)
def overview(request: Request):
    engine = engine_of(request)
    f = _filters(request)
    runs, total = run_rows(engine, f)
    return templates.TemplateResponse(
        request,
        "overview.html",
        {
            "since": f"{time.time() - SINCE_OVERLAP_S:.3f}",
            "runs": runs,
            "total": total,
            "sweeps": sweeps_overview(engine),
            "filters": f,
            "statuses": STATUSES,
            "selected": _selected(request),
            "sample": has_sample_results(engine),
            "api": str(request.base_url).rstrip("/") + "/api/v1",
        },
    )


# A live list asks for the rows changed since its last answer (`since=`, the server's clock);
# answers overlap by this much, so a row written while a poll ran is sent again, never missed.
SINCE_OVERLAP_S = 2.0


def _since(request: Request) -> float | None:
    try:
        v = float(request.query_params.get("since", ""))
    except ValueError:
        return None
    return v if math.isfinite(v) and v > 0 else None


@router.get("/fragments/runs", response_class=HTMLResponse)
def runs_fragment(request: Request):
    """The run list's rows. With `since=T`, only the rows changed after T (204 when none):
    a page with 1,000 runs on a running sweep receives the few rows that moved, not the list.
    X-Pax-Now is the T of the next poll; X-Pax-Gone lists changed runs that left the filter."""
    engine = engine_of(request)
    f = _filters(request)
    since = _since(request)
    t = time.time() - SINCE_OVERLAP_S
    if since is not None:
        runs, total = run_rows(engine, f, since=since)
        gone = []
        if any(f.values()):  # without a filter no run can leave the list
            gone = sorted(set(changed_runs(engine, since=since)) - {r["id"] for r in runs})
        headers = {
            "X-Pax-Now": f"{t:.3f}",
            "X-Pax-Total": str(total),
            "X-Pax-Gone": ",".join(map(str, gone)),
            "Cache-Control": "no-cache",
        }
        if not runs:
            return Response(status_code=204, headers=headers)
        return templates.TemplateResponse(
            request,
            "_runs_rows.html",
            {"runs": runs, "total": total, "selected": _selected(request), "partial": True},
            headers=headers,
        )
    etag = etag_of(runs_version(engine), str(request.query_params))
    if (cached := fresh(request, etag)) is not None:
        return cached
    runs, total = run_rows(engine, f)
    return templates.TemplateResponse(
        request,
        "_runs_rows.html",
        {"runs": runs, "total": total, "selected": _selected(request)},
        headers={"ETag": etag, "Cache-Control": "no-cache", "X-Pax-Now": f"{t:.3f}"},
    )


def _view(request: Request) -> tuple[bool, bool]:
    """(log-scale PPL axes, show faded points too): log and hidden outliers by default."""
    q = request.query_params
    return q.get("scale") != "linear", q.get("all") == "1"


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: Id):
    engine = engine_of(request)
    try:
        sw = get_sweep(engine, sweep_id=sweep_id)
    except NotFound:
        return not_found(request, f"There is no sweep {sweep_id}.")
    runs = sweep_runs(engine, sweep_id=sweep_id)
    p1 = [r for r in runs if r.phase in PHASE1]
    ranked = promotion.rank_cells(p1, results_for(engine, run_ids=[r.id for r in p1]))
    axes = {axis: promotion.axis_cells(ranked, axis) for axis in promotion.AXES}
    fin = finalist_stats(ledger_rows(engine, sweep_id))
    evs = events(engine, sweep_id=sweep_id)
    decisions = [
        e for e in evs if e["kind"] in ("promotion", "infeasible", "sweep", "report", "budget")
    ]
    kills = [e for e in evs if e["kind"] == "kill"]
    ylog, show_all = _view(request)
    pts = sweep_view.chart_points(axes, ranked, fin)
    figs = {}
    for name in sweep_view.CHARTS:
        svg = sweep_view.render(name, pts[name], ylog=ylog, show_all=show_all)
        xlabel = "latency ms" if name == "pareto" else f"achieved {name}"
        table = charts.points_table(pts[name], xlabel=xlabel, ylabel="dev word PPL")
        figs[name] = {"svg": svg, "table": table, "slug": f"sweep{sweep_id}-{name}"}
    finalist_runs = [r.id for r in runs if r.phase == "finalists"]
    return templates.TemplateResponse(
        request,
        "sweep.html",
        {
            "sweep": sw,
            "runs": runs,
            "axes": axes,
            "axis_runs": {a: [i for c in cells for i in c["runs"]] for a, cells in axes.items()},
            "finalist_runs": finalist_runs[: compare.MAX_RUNS],
            "finalists": fin,
            "decisions": decisions,
            "kills": kills,
            "charts": figs,
            "ylog": ylog,
            "show_all": show_all,
            "max_compare": compare.MAX_RUNS,
            "sample": has_sample_results(engine),
        },
    )


class ChartCache:
    """Rendered run charts, keyed by run and baseline, valid while their version holds; one per
    app (kept on app.state)."""

    def __init__(self, max_entries: int = 4096):
        self.entries: dict[tuple, tuple] = {}
        self.max_entries = max_entries

    def get(self, key: tuple, version: tuple, render):
        hit = self.entries.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = render()
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        self.entries[key] = (version, value)
        return value


def _chart_cache(request: Request) -> ChartCache:
    cache = getattr(request.app.state, "charts", None)
    if cache is None:
        cache = request.app.state.charts = ChartCache()
    return cache


def _series_cache(request: Request) -> SeriesCache:
    cache = getattr(request.app.state, "series", None)
    if cache is None:
        cache = request.app.state.series = SeriesCache()
    return cache


CHART_POINTS = 400


def _render_run_charts(engine, series: SeriesCache, run_id: int, baseline_id: int | None) -> dict:
    def curve(rid, name):
        return [(float(t), v) for _, t, v in series.get(engine, rid, name, CHART_POINTS)]

    loss = [(f"run {run_id}", curve(run_id, "train/loss"))]
    dev = [(f"run {run_id}", curve(run_id, "dev/word_ppl"))]
    if baseline_id is not None:
        dev.append((f"baseline (run {baseline_id})", curve(baseline_id, "dev/word_ppl")))
    return {
        "loss": {
            "svg": charts.lines(
                "train loss", loss, xlabel="tokens seen", ylabel="loss (nats/token)"
            ),
            "table": charts.lines_table(loss, xlabel="tokens", ylabel="loss"),
            "slug": f"run{run_id}-train-loss",
        },
        "dev": {
            "svg": charts.lines(
                "dev word-level PPL", dev, xlabel="tokens seen", ylabel="PPL (log)", ylog=True
            ),
            "table": charts.lines_table(dev, xlabel="tokens", ylabel="dev word PPL"),
            "slug": f"run{run_id}-dev-ppl",
        },
    }


def _baseline_of(engine, run: dict) -> int | None:
    if run["is_baseline"]:
        return None
    bases = baseline_runs(engine, sweep_id=run["sweep_id"], phase=run["phase"])
    return bases[0] if bases else None


def _run_version(engine, run: dict) -> tuple[tuple, int | None]:
    """The run's (and its baseline's) version, and its baseline: read once per request, for
    both the live fragment's ETag and the chart cache's key."""
    base = _baseline_of(engine, run)
    return (
        version(engine, run_id=run["id"]),
        version(engine, run_id=base) if base is not None else None,
    ), base


def _live_etag(version: tuple, run: dict) -> str:
    return etag_of(version, run["status"], run["tokens_seen"])


def run_charts(
    engine, cache: ChartCache, series: SeriesCache, run: dict, version: tuple, base: int | None
) -> dict:
    """Cached per run; the key is the run's (and its baseline's) version, so a new point or a
    state change re-renders them (from curves that read only their new points)."""
    return cache.get(
        (run["id"], base), version, lambda: _render_run_charts(engine, series, run["id"], base)
    )


def _log_tail(run: dict, lines: int = 40) -> str:
    if not run.get("run_dir"):
        return ""
    path = Path(run["run_dir"]) / "train.log"
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 16384))
        return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: Id):
    engine = engine_of(request)
    run = run_detail(engine, run_id=run_id)
    if run is None:
        return not_found(request, f"There is no run {run_id}.")
    return templates.TemplateResponse(request, "run.html", _run_context(request, run))


COMPONENTS = ("embedding", "attention", "ffn", "norm", "head")


def param_table(plan: dict | None) -> list[tuple[str, int, float]] | None:
    """(component, parameters, share of the total) rows of a stored plan."""
    if not plan or not plan.get("total"):
        return None
    rows = [(c, int(plan.get(c) or 0), (plan.get(c) or 0) / plan["total"]) for c in COMPONENTS]
    return rows + [("total", int(plan["total"]), 1.0)]


def _run_context(request: Request, run: dict, versioned=None) -> dict:
    """`versioned`: the (version, baseline) the caller already read."""
    engine = engine_of(request)
    result = run["result"] or {}
    plan = run["plan"] or result.get("plan")
    version, base = versioned or _run_version(engine, run)
    charts_ = run_charts(engine, _chart_cache(request), _series_cache(request), run, version, base)
    return {
        "live_etag": _live_etag(version, run),
        "run": run,
        "plan": plan,
        "param_table": param_table(plan),
        "charts": charts_,
        "events": events(engine, run_id=run["id"]),
        "log": _log_tail(run),
        "baseline": base,
        "can_cancel": run["status"] in (*ACTIVE, "queued"),
        "can_requeue": run["status"] in REQUEUABLE,
        "sample": bool((result.get("provenance") or {}).get("sample")),
    }


@router.get("/fragments/runs/{run_id}", response_class=HTMLResponse)
def run_fragment(request: Request, run_id: Id):
    engine = engine_of(request)
    run = run_detail(engine, run_id=run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    versioned = _run_version(engine, run)
    etag = _live_etag(versioned[0], run)
    if (cached := fresh(request, etag)) is not None:
        return cached
    return templates.TemplateResponse(
        request,
        "_run_live.html",
        _run_context(request, run, versioned),
        headers={"ETag": etag, "Cache-Control": "no-cache"},
    )


@router.get("/cost", response_class=HTMLResponse)
def cost_page(request: Request):
    engine = engine_of(request)
    pricing = request.app.state.pricing
    try:
        acc = what_if_accelerator(pricing, request.query_params.get("what_if") or None)
    except ValueError as e:
        return bad_request(request, f"what_if: {e}")
    sweeps = sweeps_overview(engine)
    per_sweep = [
        {"sweep": s, "cost": sweep_cost(engine, s["id"], pricing, what_if=acc)} for s in sweeps
    ]
    return templates.TemplateResponse(
        request,
        "cost.html",
        {
            "cost": cost_overview(engine),
            "sweeps": per_sweep,
            "what_if": acc,
            "accelerators": sorted(pricing.table["accelerators"]),
            "pricing": pricing,
            "sample": has_sample_results(engine),
        },
    )
