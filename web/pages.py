"""The dashboard: Jinja pages over the ledger, served by the same FastAPI app.

Pages render completely on the server (tables work with JavaScript off); a small script polls
HTML fragments to update them live. Charts are inline SVG from `web.charts`, cached per run
(on the app) and invalidated whenever the run gets a new point or changes state. Every asset is
served by the app (no CDN). This package only reads, through runner's read functions; a run's
architecture is the plan stored with it, so the dashboard never runs the planner.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as FastAPIPath
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from runner.ledger import crud, queries
from runner.ledger.models import STATUSES
from runner.study import promotion
from runner.study.plan_spec import PHASE1
from runner.study.results import ledger_rows
from runner.study.stats import finalist_stats, pareto_front
from web import charts

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
MAX_ID = 2**62  # ids beyond SQLite's integers are refused (422), never looked up
Id = Annotated[int, FastAPIPath(ge=1, le=MAX_ID)]
STATIC = {"app.css": "text/css", "live.js": "text/javascript", "favicon.svg": "image/svg+xml"}


def _fmt_tokens(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def _fmt_s(s) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v, digits=2) -> str:
    """A number for a table; '-' for anything else (a result document may lack a field)."""
    return f"{v:,.{digits}f}" if _number(v) else "-"


def _pct(v) -> str:
    return _num(100 * v, 1) if _number(v) else "-"


def _mib(v) -> str:
    return _num(v / 2**20, 0) if _number(v) else "-"


templates.env.filters.update(
    tokens=_fmt_tokens,
    dur=_fmt_s,
    num=_num,
    pct=_pct,
    mib=_mib,
    when=lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-",
)


def _engine(request: Request):
    return request.app.state.engine


@router.get("/static/{name}")
def static(name: str):
    if name not in STATIC:
        raise HTTPException(404, f"no static file {name}")
    return FileResponse(
        HERE / "static" / name,
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=300"},
    )


def _an_id(text: str | None) -> bool:
    """A ledger id in a query string: ASCII digits ('²'.isdigit() is true too) within range."""
    return bool(text) and text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_ID


def _filters(request: Request) -> dict:
    q = request.query_params
    sweep = q.get("sweep")
    return {
        "sweep": int(sweep) if _an_id(sweep) else None,
        "phase": q.get("phase") or None,
        "status": q.get("status") if q.get("status") in STATUSES else None,
    }


@router.get("/", response_class=HTMLResponse)
def overview(request: Request):
    engine = _engine(request)
    f = _filters(request)
    runs, total = queries.runs_page(engine, **f)
    return templates.TemplateResponse(
        request,
        "overview.html",
        {
            "runs": runs,
            "total": total,
            "sweeps": queries.sweeps_overview(engine),
            "filters": f,
            "statuses": STATUSES,
            "sample": queries.has_sample_results(engine),
            "api": str(request.base_url).rstrip("/") + "/api/v1",
        },
    )


@router.get("/fragments/runs", response_class=HTMLResponse)
def runs_fragment(request: Request):
    f = _filters(request)
    runs, total = queries.runs_page(_engine(request), **f)
    return templates.TemplateResponse(request, "_runs_rows.html", {"runs": runs, "total": total})


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: Id):
    engine = _engine(request)
    try:
        sw = crud.get_sweep(engine, sweep_id=sweep_id)
    except crud.NotFound:
        return not_found(request, f"There is no sweep {sweep_id}.")
    runs = crud.sweep_runs(engine, sweep_id=sweep_id)
    p1 = [r for r in runs if r.phase in PHASE1]
    ranked = promotion.rank_cells(p1, crud.results_for(engine, run_ids=[r.id for r in p1]))
    axes = {axis: promotion.axis_cells(ranked, axis) for axis in promotion.AXES}
    fin = _finalists(engine, sweep_id)
    evs = queries.event_dicts(engine, sweep_id=sweep_id)
    decisions = [
        e for e in evs if e["kind"] in ("promotion", "infeasible", "sweep", "report", "budget")
    ]
    kills = [e for e in evs if e["kind"] == "kill"]
    return templates.TemplateResponse(
        request,
        "sweep.html",
        {
            "sweep": sw,
            "runs": runs,
            "axes": axes,
            "finalists": fin,
            "decisions": decisions,
            "kills": kills,
            "charts": _sweep_charts(axes, ranked, fin),
            "sample": queries.has_sample_results(engine),
        },
    )


def _finalists(engine, sweep_id: int) -> list[dict]:
    return finalist_stats(ledger_rows(engine, sweep_id))


def _sweep_charts(axes: dict[str, list[dict]], ranked: list[dict], fin: list[dict]) -> dict:
    out = {}
    for knob, label in (
        ("embedding_ratio", "embedding share"),
        ("glu_expansion", "SwiGLU expansion"),
    ):
        pts = [
            {
                "x": c["config"]["model"][knob],
                "y": c["dev_ppl"],
                "label": c["cell"],
                "err": c["dev_ppl_std"],
                "group": "killed" if c["killed"] else "ranking",
            }
            for c in axes[knob]
            if math.isfinite(c["dev_ppl"])
        ]
        pts += [
            {
                "x": f[knob],
                "y": f["dev_ppl_mean"],
                "label": f["cell"],
                "err": f["dev_ppl_std"],
                "group": "finalists",
            }
            for f in fin
            if promotion.on_axis(knob, f.get("axis"), False) and math.isfinite(f["dev_ppl_mean"])
        ]
        out[knob] = charts.scatter(
            f"dev PPL vs {label}", pts, xlabel=label, ylabel="dev word-level PPL"
        )
    pts = [
        {"x": c["latency_ms"], "y": c["dev_ppl"], "label": c["cell"], "group": c["axis"]}
        for c in ranked
        if math.isfinite(c["latency_ms"]) and math.isfinite(c["dev_ppl"])
    ]
    front = pareto_front([(p["x"], p["y"]) for p in pts])
    out["pareto"] = charts.scatter(
        "latency vs PPL (Pareto front dashed)",
        pts,
        xlabel="batch-1 latency at seq 128 (ms)",
        ylabel="dev word-level PPL",
        front=front,
    )
    return out


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


def _render_run_charts(engine, run_id: int, baseline_id: int | None) -> dict:
    loss = queries.series(engine, run_id, "train/loss")
    dev = queries.series(engine, run_id, "dev/word_ppl")
    dev_series = [(f"run {run_id}", dev)]
    if baseline_id is not None:
        dev_series.append(
            (f"baseline (run {baseline_id})", queries.series(engine, baseline_id, "dev/word_ppl"))
        )
    return {
        "loss": charts.lines(
            "train loss",
            [(f"run {run_id}", loss)],
            xlabel="tokens seen",
            ylabel="loss (nats/token)",
        ),
        "dev": charts.lines(
            "dev word-level PPL", dev_series, xlabel="tokens seen", ylabel="PPL", ylog=True
        ),
    }


def _baseline_of(engine, run: dict) -> int | None:
    if run["is_baseline"]:
        return None
    return queries.baseline_run(engine, sweep_id=run["sweep_id"], phase=run["phase"])


def run_charts(engine, cache: ChartCache, run: dict) -> dict:
    """Cached per run; the key is the run's (and its baseline's) version, so a new point or a
    state change re-renders them."""
    base = _baseline_of(engine, run)
    version = (
        queries.version(engine, run["id"]),
        queries.version(engine, base) if base is not None else None,
    )
    return cache.get(
        (run["id"], base), version, lambda: _render_run_charts(engine, run["id"], base)
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
    engine = _engine(request)
    run = queries.run_detail(engine, run_id)
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


def _run_context(request: Request, run: dict) -> dict:
    engine = _engine(request)
    result = run["result"] if isinstance(run["result"], dict) else {}
    plan = run["plan"] or result.get("plan")
    return {
        "run": run,
        "plan": plan,
        "param_table": param_table(plan),
        "charts": run_charts(engine, _chart_cache(request), run),
        "events": queries.event_dicts(engine, run_id=run["id"]),
        "log": _log_tail(run),
        "baseline": _baseline_of(engine, run),
        "sample": bool((result.get("provenance") or {}).get("sample")),
    }


@router.get("/fragments/runs/{run_id}", response_class=HTMLResponse)
def run_fragment(request: Request, run_id: Id):
    engine = _engine(request)
    run = queries.run_detail(engine, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    return templates.TemplateResponse(request, "_run_live.html", _run_context(request, run))


@router.get("/cost", response_class=HTMLResponse)
def cost_page(request: Request):
    engine = _engine(request)
    return templates.TemplateResponse(
        request,
        "cost.html",
        {"cost": queries.cost_overview(engine), "sweeps": queries.sweeps_overview(engine)},
    )


def not_found(request: Request, message: str) -> Response:
    return templates.TemplateResponse(request, "404.html", {"message": message}, status_code=404)
