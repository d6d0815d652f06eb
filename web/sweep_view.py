"""The sweep page's charts: dev PPL along each axis and the latency-PPL Pareto chart, each with
the rows it draws (shown as a table under it, and the source of the download).

The x axes are the planner's achieved values (the embedding share and GLU expansion the model
really has after rounding to whole heads and multiples of 8), not the requested ones. Killed
cells and controls are faded and do not set the axis limits unless `show_all`.
"""

from __future__ import annotations

import math

from runner.study import promotion
from runner.study.stats import pareto_front
from web import charts

AXIS_CHARTS = (("embedding_ratio", "embedding share"), ("glu_expansion", "SwiGLU expansion"))
CHARTS = ("embedding_ratio", "glu_expansion", "pareto")
PPL = "dev word-level PPL"


def achieved(cell: dict, knob: str) -> float:
    """The planner's achieved value of `knob` for a ranked cell (the requested one for a plan
    stored before achieved values were kept)."""
    plan = cell.get("plan") or {}
    v = plan.get(knob)
    return float(v if v is not None else cell["config"]["model"][knob])


def _faded(c: dict) -> bool:
    return bool(c.get("all_killed")) or c.get("axis") == "control"


def chart_points(axes: dict, ranked: list[dict], fin: list[dict]) -> dict[str, list[dict]]:
    """name -> the points of that chart (x, y, label, err, group, faded, status)."""
    plans = {c["cell"]: c for c in ranked}
    out = {}
    for knob, _ in AXIS_CHARTS:
        pts = [
            {
                "x": achieved(c, knob),
                "y": c["dev_ppl"],
                "label": c["cell"],
                "err": c["dev_ppl_std"],
                "group": "killed" if c["all_killed"] else "ranking",
                "faded": _faded(c),
                "runs": c["runs"],
            }
            for c in axes[knob]
            if math.isfinite(c["dev_ppl"])
        ]
        pts += [
            {
                "x": achieved(plans[f["cell"]], knob) if f["cell"] in plans else f[knob],
                "y": f["dev_ppl_mean"],
                "label": f["cell"] + " (finalist)",
                "err": f["dev_ppl_std"],
                "group": "finalists",
                "faded": False,
                "runs": plans[f["cell"]]["runs"] if f["cell"] in plans else [],
            }
            for f in fin
            if promotion.on_axis(knob, f.get("axis"), False) and math.isfinite(f["dev_ppl_mean"])
        ]
        out[knob] = pts
    out["pareto"] = [
        {
            "x": c["latency_ms"],
            "y": c["dev_ppl"],
            "label": c["cell"],
            "group": c["axis"] or "-",
            "faded": _faded(c),
            "runs": c["runs"],
        }
        for c in ranked
        if math.isfinite(c["latency_ms"]) and math.isfinite(c["dev_ppl"])
    ]
    return out


def render(name: str, pts: list[dict], *, ylog: bool, show_all: bool) -> str:
    scale = "log" if ylog else "linear"
    if name == "pareto":
        # the front is drawn among the cells that count: killed runs and controls are not
        # candidates, and a faded point on the front would hide the real trade-off
        live = [i for i, p in enumerate(pts) if not p["faded"]]
        front = [live[i] for i in pareto_front([(pts[i]["x"], pts[i]["y"]) for i in live])]
        return charts.scatter(
            "batch-1 latency vs dev PPL (Pareto front dashed)",
            pts,
            xlabel="batch-1 latency at seq 128 (ms)",
            ylabel=f"{PPL} ({scale})",
            front=front,
            ylog=ylog,
            show_all=show_all,
        )
    label = dict(AXIS_CHARTS)[name]
    return charts.scatter(
        f"dev PPL vs achieved {label}",
        pts,
        xlabel=f"achieved {label} (planner)",
        ylabel=f"{PPL} ({scale})",
        ylog=ylog,
        show_all=show_all,
    )
