"""What a whole study costs and how long it takes on the cloud, before anything is launched:
on N warm workers with M slots each (`pax cloud up`), and, to compare, as one managed job per
run (`pax sky launch`). A plan's phases run one after the other (its finalists are chosen from
its ranking), so the study's wall time is their sum.

Deliberately an upper bound on both: every run trains its whole budget (the kill rule and
early stopping only shorten runs), and packed runs train at the speed of a full GPU even in a
phase's tail, when fewer share it. The finalists are a range: `top_k` cells in all (the baseline
best on both axes) to `top_k + 1` on each axis (a thin margin on both)."""

from __future__ import annotations

import heapq
from bisect import bisect_right

from runner.cost import Pricing
from runner.study.plan_spec import PlanSpec, cells
from runner.study.promotion import AXES


def packing_speedup(pricing: Pricing, slots: int) -> float:
    """Aggregate tokens/s of `slots` runs at once on one GPU, in single runs: the price table's
    measured points (docs/gpu.md), linear between them and flat past the last."""
    table = pricing.table.get("packing") or {}
    points = sorted((int(k), float(v)) for k, v in (table.get("speedup") or {1: 1.0}).items())
    xs = [x for x, _ in points]
    i = bisect_right(xs, slots)
    if i == 0:
        return points[0][1] * slots / points[0][0]
    if i == len(points):
        return points[-1][1]
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (slots - x0) / (x1 - x0)


def phases(plan: PlanSpec, kind: str) -> list[dict]:
    """The study's phases in order, each with its run count range and tokens per run."""
    seeds = len(plan.ranking.seeds)
    ranking = len(cells(plan)) + len(plan.experiments)
    out = [
        {
            "phase": "ranking",
            "runs": (ranking * seeds,) * 2,
            "tokens_per_run": plan.ranking.max_tokens,
        }
    ]
    if kind == "plan":
        fin = plan.finalists
        low, high = fin.top_k, len(AXES) * (fin.top_k + 1)
        n = len(fin.seeds)
        out.append(
            {"phase": "finalists", "runs": (low * n, high * n), "tokens_per_run": fin.max_tokens}
        )
    return out


def _makespan(durations: list[float], lanes: int) -> tuple[float, list[float]]:
    """Runs taken in order by the first free lane (as workers claim): (the phase's wall time,
    each lane's busy seconds)."""
    free = [(0.0, i) for i in range(lanes)]
    busy = [0.0] * lanes
    for d in durations:
        t, i = heapq.heappop(free)
        busy[i] += d
        heapq.heappush(free, (t + d, i))
    return max(t for t, _ in free), busy


def _scenario(pricing, plan_phases, pick, *, acc, spot, tps, workers, slots, idle_exit_s) -> dict:
    price, _ = pricing.price_for(acc, spot)
    per_run_tps = tps * packing_speedup(pricing, slots) / slots
    startup = pricing.startup_overhead_s
    wall, vm_s, out = startup, [startup] * workers, []
    for j, p in enumerate(plan_phases):
        runs = p["runs"][pick]
        span, busy = _makespan([p["tokens_per_run"] / per_run_tps] * runs, workers * slots)
        last = j == len(plan_phases) - 1
        for i in range(workers):
            # before the last phase every worker waits for the next (promotion comes when the
            # whole phase is done); in the last, a worker lives while any of its slots trains
            lanes = busy[i * slots : (i + 1) * slots]
            vm_s[i] += (max(lanes) if any(lanes) else 0.0) if last else span
        out.append(
            {
                "phase": p["phase"],
                "runs": runs,
                "tokens": runs * p["tokens_per_run"],
                "wall_s": span,
            }
        )
        wall += span
    vm_s = [s + idle_exit_s for s in vm_s]  # each waits idle_exit_s for work before it leaves
    ctl_price, autostop, _ = pricing.controller()
    ctl_s = wall + idle_exit_s + autostop
    vm_usd, ctl_usd = sum(vm_s) / 3600 * price, ctl_s / 3600 * ctl_price
    return {
        "phases": out,
        "wall_s": wall,  # to the report; the workers then wait idle_exit_s and leave
        "gpu_hours": sum(vm_s) / 3600,
        "vm_usd": vm_usd,
        "controller_usd": ctl_usd,
        "usd": vm_usd + ctl_usd,
    }


def _per_run_jobs(pricing, plan_phases, pick, *, acc, spot, tps, concurrency) -> dict:
    price, _ = pricing.price_for(acc, spot)
    startup = pricing.startup_overhead_s
    wall = gpu_s = 0.0
    for p in plan_phases:
        runs, d = p["runs"][pick], startup + p["tokens_per_run"] / tps
        wall += _makespan([d] * runs, max(1, concurrency))[0] if runs else 0.0
        gpu_s += runs * d
    ctl_price, autostop, _ = pricing.controller()
    ctl_usd = (wall + autostop) / 3600 * ctl_price
    return {
        "wall_s": wall,
        "gpu_hours": gpu_s / 3600,
        "vm_usd": gpu_s / 3600 * price,
        "controller_usd": ctl_usd,
        "usd": gpu_s / 3600 * price + ctl_usd,
    }


def study_forecast(
    pricing: Pricing,
    plan: PlanSpec,
    kind: str,
    *,
    accelerator: str,
    spot: bool = True,
    workers: int,
    slots: int,
    idle_exit_s: float = 600,
    tokens_per_s: float | None = None,
    concurrency: int = 8,
) -> dict:
    """The study on `workers` x `slots` of `accelerator` (low and high: the finalists' range),
    and the same study as one managed job per run, `concurrency` at a time."""
    price, source = pricing.price_for(accelerator, spot)  # an unknown GPU: ValueError
    tps = tokens_per_s or pricing.prior_tokens_per_s(accelerator)
    plan_phases = phases(plan, kind)
    common = {"acc": accelerator, "spot": spot, "tps": tps}
    pool = {
        name: _scenario(
            pricing, plan_phases, i, workers=workers, slots=slots, idle_exit_s=idle_exit_s, **common
        )
        for i, name in enumerate(("low", "high"))
    }
    per_run = {
        name: _per_run_jobs(pricing, plan_phases, i, concurrency=concurrency, **common)
        for i, name in enumerate(("low", "high"))
    }
    return {
        "plan": plan.name,
        "accelerator": accelerator,
        "spot": spot,
        "price_per_hour": price,
        "price_source": source,
        "tokens_per_s": tps,
        "tokens_per_s_source": "measured" if tokens_per_s else "prior (price table)",
        "workers": workers,
        "slots": slots,
        "packing_speedup": packing_speedup(pricing, slots),
        "packing_source": (pricing.table.get("packing") or {}).get("source", "none: 1 run = 1x"),
        "startup_overhead_s": pricing.startup_overhead_s,
        "idle_exit_s": idle_exit_s,
        "workers_forecast": pool,
        "one_job_per_run": {**per_run, "concurrency": concurrency},
        "budget_usd": plan.budget_usd,
        "upper_bound": "every run trains its whole budget (kills and early stops only shorten "
        "it); finalists from top_k in all (low) to top_k + 1 per axis (high)",
    }
