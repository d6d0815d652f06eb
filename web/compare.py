"""Compare runs side by side: their dev PPL and train-loss curves on one chart (x = tokens,
steps or training wall time; optional smoothing), the config fields that differ, and the final
metrics with the best value of each column marked.

The selection is the URL (`/compare?runs=1,5,9`), so a comparison can be shared. Wall time per
point comes from the trainer's `train/elapsed_s` series; a run without one (logged before it
existed) is placed at tokens / its measured tokens/s, and the chart says so.
"""

from __future__ import annotations

import bisect
import json

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from runner.ledger import series
from runner.ledger.runs import run_detail
from web import charts
from web.render import an_id, bad_request, engine_of, number, templates

router = APIRouter(include_in_schema=False)
MAX_RUNS = 12
XS = {"tokens": "tokens seen", "steps": "optimizer steps", "wall": "training wall time (s)"}
CURVES = (
    ("dev/word_ppl", "dev word-level PPL", True),
    ("train/loss", "train loss (nats/token)", False),
)
# final metrics: (column, where it is in a run, lower is better?)
METRICS = (
    ("dev word PPL", ("result", "dev", "word_ppl"), True),
    ("test word PPL", ("result", "test", "word_ppl"), True),
    ("dev bits/byte", ("result", "dev", "bits_per_byte"), True),
    ("SmallBench", ("result", "smallbench", "macro_acc"), False),
    ("latency seq128 ms", ("result", "latency", "seq128", "median_ms"), True),
    ("train tokens/s", ("result", "throughput", "train_tokens_per_s"), False),
    ("cost $", ("cost_usd",), True),
)


def parse_ids(request: Request) -> tuple[list[int], str | None]:
    """Run ids from `runs=1,5,9` (or repeated `runs=`, as a plain form sends them), in order,
    without repeats; or the reason they cannot be read."""
    raw = [p for v in request.query_params.getlist("runs") for p in v.split(",") if p.strip()]
    bad = [p for p in raw if not an_id(p.strip())]
    if bad:
        return [], f"runs: {bad[0]!r} is not a run id; give ids like /compare?runs=1,5,9"
    ids = list(dict.fromkeys(int(p) for p in raw))
    if len(ids) > MAX_RUNS:
        return [], f"runs: {len(ids)} runs asked for; compare at most {MAX_RUNS} at once"
    return ids, None


def parse_view(request: Request) -> tuple[str, float, str | None]:
    q = request.query_params
    x = q.get("x") or "tokens"
    if x not in XS:
        return x, 0.0, f"x: {x!r} is not an axis; use one of {', '.join(XS)}"
    try:
        smooth = float(q.get("smooth") or 0)
    except ValueError:
        smooth = -1.0
    if not 0 <= smooth < 1:
        return x, 0.0, "smooth: give a number from 0 (raw) up to 0.99 (smoothest)"
    return x, smooth, None


def ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start."""
    if weight <= 0:
        return values
    out, acc = [], 0.0
    for i, v in enumerate(values, 1):
        acc = weight * acc + (1 - weight) * v
        out.append(acc / (1 - weight**i))
    return out


def flatten(doc, prefix: str = "") -> dict[str, object]:
    """A nested config as dotted keys (`model.embedding_ratio`)."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: doc}


def config_diff(runs: list[dict]) -> list[tuple[str, list[str]]]:
    """(field, value per run) for the fields whose values are not all equal: the requested
    config, then the planner's achieved architecture (`plan.*`)."""
    flat = [
        {
            **flatten(r["config"]),
            **{f"plan.{k}": v for k, v in (r["plan"] or {}).items() if not isinstance(v, dict)},
        }
        for r in runs
    ]
    keys = sorted(set().union(*flat), key=lambda k: (k.startswith("plan."), k))
    rows = []
    for k in keys:
        vals = [_show(f[k]) if k in f else "—" for f in flat]
        if len(set(vals)) > 1:
            rows.append((k, vals))
    return rows


def _show(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _dig(doc, path):
    for k in path:
        doc = doc.get(k) if isinstance(doc, dict) else None
    return doc


def metrics_table(runs: list[dict]) -> tuple[list[str], list[list[dict]]]:
    """Columns, and per run a cell per column: value and whether it is the column's best."""
    rows = [[{"value": _dig(r, path), "best": False} for _, path, _ in METRICS] for r in runs]
    for j, (_, _, lower) in enumerate(METRICS):
        vals = [row[j]["value"] for row in rows if number(row[j]["value"])]
        if len(set(vals)) < 2:  # one value, or all equal: nothing to pick
            continue
        best = min(vals) if lower else max(vals)
        for row in rows:
            row[j]["best"] = row[j]["value"] == best
    return [m[0] for m in METRICS], rows


def _wall_of(engine, run: dict) -> tuple[callable | None, bool]:
    """tokens -> training seconds for one run (None when the run has no way to tell), and
    whether it is estimated."""
    el = series.read(engine, run["id"], "train/elapsed_s", 2000).points
    if el:
        toks = [t for _, t, _ in el]
        secs = [v for _, _, v in el]

        def wall(t):
            i = bisect.bisect_left(toks, t)
            if i == 0:
                return secs[0] * t / toks[0] if toks[0] else secs[0]
            if i >= len(toks):
                return secs[-1]
            t0, t1, s0, s1 = toks[i - 1], toks[i], secs[i - 1], secs[i]
            return s0 + (s1 - s0) * (t - t0) / (t1 - t0) if t1 > t0 else s1

        return wall, False
    tps = run["latest"].get("train/tokens_per_s") or (
        _dig(run, ("result", "throughput", "train_tokens_per_s"))
    )
    if not tps:
        return None, True
    return (lambda t: t / tps), True


def curves(engine, runs: list[dict], x: str, smooth: float) -> tuple[dict, bool]:
    """The overlaid charts, and whether any wall time was estimated."""
    estimated = False
    walls = {}
    if x == "wall":
        for r in runs:
            walls[r["id"]], est = _wall_of(engine, r)
            estimated |= est
    unknown = [f"#{i}" for i, w in walls.items() if w is None]
    out = {}
    for name, label, ylog in CURVES:
        lines = []
        for r in runs:
            if x == "wall" and walls[r["id"]] is None:
                continue
            pts = series.read(engine, r["id"], name, 600).points
            xs = [s if x == "steps" else walls[r["id"]](t) if x == "wall" else t for s, t, _ in pts]
            ys = ema([v for _, _, v in pts], smooth)
            lines.append((f"#{r['id']} {r['cell'] or r['name']}", list(zip(xs, ys, strict=True))))
        note = f"smoothed (EMA {smooth:g})" if smooth else ""
        if estimated:
            note = (note + "; " if note else "") + "wall time estimated from tokens/s"
        if unknown:
            note += f"; no wall time for {', '.join(unknown)}"
        svg = charts.lines(
            label,
            lines,
            xlabel=XS[x],
            ylabel=label + (" (log)" if ylog else ""),
            ylog=ylog,
            note=note,
            canvas=charts.Canvas(w=960, h=380),
        )
        slug = name.replace("/", "-")
        table = charts.lines_table(lines, xlabel=XS[x], ylabel=label)
        out[name] = {"svg": svg, "table": table, "slug": f"compare-{slug}"}
    return out, estimated


@router.get("/compare", response_class=HTMLResponse)
def compare(request: Request):
    ids, why = parse_ids(request)
    x, smooth, why_view = parse_view(request)
    if why or why_view:
        return bad_request(request, why or why_view)
    engine = engine_of(request)
    runs = [r for r in (run_detail(engine, run_id=i) for i in ids) if r is not None]
    missing = [i for i in ids if i not in {r["id"] for r in runs}]
    charts_, _ = curves(engine, runs, x, smooth) if runs else ({}, False)
    columns, rows = metrics_table(runs)
    return templates.TemplateResponse(
        request,
        "compare.html",
        {
            "runs": runs,
            "ids": ids,
            "missing": missing,
            "x": x,
            "xs": XS,
            "smooth": smooth,
            "charts": charts_,
            "diff": config_diff(runs) if len(runs) > 1 else [],
            "columns": columns,
            "rows": rows,
            "sample": any(
                bool(((r["result"] or {}).get("provenance") or {}).get("sample")) for r in runs
            ),
        },
    )
