"""The dashboard: Jinja pages over the ledger, served by the same FastAPI app.

Pages render completely on the server (tables work with JavaScript off); a small script polls
HTML fragments to update them live. Charts are inline SVG from `web.charts`, cached per run and
invalidated whenever the run gets a new point or changes state. Every asset is served by the
app (no CDN). This package only reads: buttons would post to the API.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from web import charts, queries

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
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


def _num(v, digits=2) -> str:
    return (
        "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:,.{digits}f}"
    )


templates.env.filters.update(
    tokens=_fmt_tokens,
    dur=_fmt_s,
    num=_num,
    when=lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-",
)


def _engine(request: Request):
    return request.app.state.engine


def _sample_data(engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.exec_driver_sql(
                "SELECT 1 FROM results WHERE json_extract(metrics_json, '$.provenance.sample') = 1 "
                "LIMIT 1"
            ).first()
        )


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
        "sweep": int(sweep) if sweep and sweep.isdigit() else None,
        "phase": q.get("phase") or None,
        "status": q.get("status") if q.get("status") in queries.STATUSES else None,
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
            "sweeps": queries.sweeps(engine),
            "filters": f,
            "statuses": queries.STATUSES,
            "sample": _sample_data(engine),
            "api": str(request.base_url).rstrip("/") + "/api/v1",
        },
    )


@router.get("/fragments/runs", response_class=HTMLResponse)
def runs_fragment(request: Request):
    f = _filters(request)
    runs, total = queries.runs_page(_engine(request), **f)
    return templates.TemplateResponse(request, "_runs_rows.html", {"runs": runs, "total": total})


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: int):
    from runner import plans
    from runner.crud import NotFound

    engine = _engine(request)
    try:
        sw = plans.get_sweep(engine, sweep_id)
    except NotFound:
        return not_found(request, f"There is no sweep {sweep_id}.")
    runs = plans.sweep_runs(engine, sweep_id)
    p1 = [r for r in runs if r.phase in plans.PHASE1]
    ranked = plans.rank_cells(engine, p1)
    axes = {}
    for axis in ("embedding_ratio", "glu_expansion"):
        axes[axis] = [c for c in ranked if c["axis"] in (axis, "baseline") or c["is_baseline"]]
    fin = _finalists(engine, sweep_id)
    evs = queries.events(engine, sweep_id=sweep_id)
    decisions = [e for e in evs if e["kind"] in ("promotion", "infeasible", "sweep", "report")]
    kills = [e for e in evs if e["to"] == "killed"]
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
            "charts": _sweep_charts(ranked, fin),
            "sample": _sample_data(engine),
        },
    )


def _finalists(engine, sweep_id: int) -> list[dict]:
    from runner.report import finalists_table, frame_from_ledger

    df, _ = frame_from_ledger(engine, sweep_id)
    if df.empty:
        return []
    t = finalists_table(df)
    return [] if t.empty else t.to_dict("records")


def _sweep_charts(ranked: list[dict], fin: list[dict]) -> dict:
    from runner.report import pareto_front

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
            for c in ranked
            if (c["axis"] in (knob, "baseline") or c["is_baseline"]) and math.isfinite(c["dev_ppl"])
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
            if f.get("axis") in (knob, "baseline") and math.isfinite(f["dev_ppl_mean"])
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


_CHART_CACHE: dict[tuple, tuple] = {}


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


def run_charts(engine, run: dict) -> dict:
    """Cached per run; the key is the run's (and its baseline's) version, so a new point or a
    state change re-renders them."""
    base = queries.baseline_of(engine, run)
    version = (
        queries.version(engine, run["id"]),
        queries.version(engine, base) if base is not None else None,
    )
    k = (id(engine), run["id"], base)
    hit = _CHART_CACHE.get(k)
    if hit is not None and hit[0] == version:
        return hit[1]
    value = _render_run_charts(engine, run["id"], base)
    if len(_CHART_CACHE) > 4096:
        _CHART_CACHE.clear()
    _CHART_CACHE[k] = (version, value)
    return value


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
def run_page(request: Request, run_id: int):
    engine = _engine(request)
    run = queries.run_detail(engine, run_id)
    if run is None:
        return not_found(request, f"There is no run {run_id}.")
    return templates.TemplateResponse(request, "run.html", _run_context(engine, run))


def _run_context(engine, run: dict) -> dict:
    from trainer.config import TrainConfig
    from trainer.params import param_table

    plan = (run["result"] or {}).get("plan")
    table = None
    try:
        p = TrainConfig.model_validate(run["config"]).plan()
        plan = plan or p.to_dict()
        table = param_table(p)
    except ValueError:
        pass
    return {
        "run": run,
        "plan": plan,
        "param_table": table,
        "charts": run_charts(engine, run),
        "events": queries.events(engine, run_id=run["id"]),
        "log": _log_tail(run),
        "baseline": queries.baseline_of(engine, run),
        "sample": bool(((run["result"] or {}).get("provenance") or {}).get("sample")),
    }


@router.get("/fragments/runs/{run_id}", response_class=HTMLResponse)
def run_fragment(request: Request, run_id: int):
    engine = _engine(request)
    run = queries.run_detail(engine, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    return templates.TemplateResponse(request, "_run_live.html", _run_context(engine, run))


@router.get("/cost", response_class=HTMLResponse)
def cost_page(request: Request):
    engine = _engine(request)
    return templates.TemplateResponse(
        request,
        "cost.html",
        {"cost": queries.cost_summary(engine), "sweeps": queries.sweeps(engine)},
    )


def not_found(request: Request, message: str) -> Response:
    return templates.TemplateResponse(request, "404.html", {"message": message}, status_code=404)
