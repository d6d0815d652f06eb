"""A sweep's life in the ledger: submit (phase-1 cells queued), promote (finalists queued) and
advance (the scheduler's hook: promotion when phase 1 has finished, closing when the finalists
have).

Submitting a plan writes every phase-1 cell as a queued run in one transaction (a refused cell
becomes an `infeasible` event with the planner's message). When phase 1 has finished, the best
cells per axis are promoted (top 2 when the margin is thin) and trained at the full budget with
several seeds. Every decision is an event with its evidence, and decisions.md in the sweep's
report folder says the same in prose (rewritten whenever a decision is recorded). All state is
in the ledger, so a restarted service picks up where it was: no cell runs twice (a unique index
on sweep, phase, cell, seed), none is forgotten.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from runner.cost import Pricing, measured_tokens_per_s, sweep_cost, write_summary
from runner.ledger.errors import Conflict
from runner.ledger.events import add_event, events
from runner.ledger.models import FINISHED, Sweep
from runner.ledger.results import results_for
from runner.ledger.sweeps import (
    add_finalists,
    close_sweep,
    create_sweep,
    get_sweep,
    list_sweeps,
    sweep_runs,
)
from runner.study import promotion
from runner.study.decisions import report_dir, write_decisions
from runner.study.plan_spec import PHASE1, PlanSpec, cell_config, cells
from trainer.config import ConfigError, deep_merge, validate


def _sweep_file_rows(plan: PlanSpec) -> tuple[list[dict], list[dict]]:
    rows, infeasible = [], []
    base_model = plan.base.get("model") or {}
    baseline_named = False
    for name, exp in plan.experiments.items():
        cfg = deep_merge(plan.base, exp)
        cfg["name"] = name
        try:
            tc = validate(cfg)
        except ConfigError as e:
            infeasible.append({"cell": name, "reason": str(e)})
            continue
        # the baseline: the first experiment that leaves the base's model as it is
        same = set(exp) <= {"model", "name"} and all(
            base_model.get(k) == v for k, v in (exp.get("model") or {}).items()
        )
        is_baseline = same and not baseline_named
        baseline_named = baseline_named or same
        rows.append(
            {
                "cfg": tc,
                "cell": name,
                "axis": "sweep",
                "phase": "ranking",
                "is_baseline": is_baseline,
                "priority": 10 if is_baseline else 0,
            }
        )
    return rows, infeasible


def _plan_rows(plan: PlanSpec) -> tuple[list[dict], list[dict]]:
    rows, infeasible = [], []
    for c in cells(plan):
        for seed in plan.ranking.seeds:
            cfg = cell_config(plan, c, seed=seed, max_tokens=plan.ranking.max_tokens)
            try:
                tc = validate(cfg)
            except ConfigError as e:
                if seed == plan.ranking.seeds[0]:
                    infeasible.append(
                        {
                            "cell": c["cell"],
                            "axis": c["axis"],
                            "model": c["model"],
                            "reason": str(e),
                        }
                    )
                continue
            rows.append(
                {
                    "cfg": tc,
                    "cell": c["cell"],
                    "axis": c["axis"],
                    "phase": c["phase"],
                    "is_baseline": c["is_baseline"],
                    # the baseline leads: the kill rule compares with it
                    "priority": 10 if c["is_baseline"] else 0,
                }
            )
    return rows, infeasible


def submit(
    engine: Engine,
    plan: PlanSpec,
    kind: str,
    reports_root: Path,
    pricing: Pricing | None = None,
    check=None,
) -> Sweep:
    """Validate every cell, then write the sweep, its queued runs and its infeasible cells in
    one transaction. `check(configs)` may refuse the cells first (raises: nothing is
    written), e.g. when their data is missing where they would run."""
    rows, infeasible = _sweep_file_rows(plan) if kind == "sweep" else _plan_rows(plan)
    if check is not None:
        check([r["cfg"] for r in rows])
    for r in rows:
        r["launcher"] = plan.launcher
    if not rows:
        raise ConfigError(
            "plan: no cell is feasible; "
            + "; ".join(f"{i['cell']}: {i['reason']}" for i in infeasible[:3])
        )
    sweep = create_sweep(
        engine,
        name=plan.name,
        kind=kind,
        spec_json=plan.model_dump_json(),
        budget_usd=plan.budget_usd,
        reports_root=str(reports_root),
        runs=rows,
        infeasible=infeasible,
    )
    write_decisions(engine, sweep.id)
    write_summary(engine, sweep.id, report_dir(sweep), pricing)
    return sweep


def phase_finished(runs: list) -> bool:
    return bool(runs) and all(r.status in FINISHED for r in runs)


def promote(
    engine: Engine,
    sweep_id: int,
    *,
    pricing: Pricing,
    cells_override: list[str] | None = None,
    force: bool = False,
    who: str = "automatic",
) -> dict:
    """Decide the finalists and queue them (idempotent: existing finalist runs are kept)."""
    sweep = get_sweep(engine, sweep_id=sweep_id)
    plan = PlanSpec.model_validate_json(sweep.spec_json)
    p1 = sweep_runs(engine, sweep_id=sweep_id, phases=PHASE1)
    if not force and not phase_finished(p1):
        waiting = sum(r.status not in FINISHED for r in p1)
        raise Conflict(
            f"sweep {sweep_id}: {waiting} ranking runs are not finished; "
            "promote with force=true to decide on what has finished"
        )
    ranked_all = promotion.rank_cells(p1, results_for(engine, run_ids=[r.id for r in p1]))
    axes: dict[str, dict] = {}
    chosen: dict[str, dict] = {}
    if sweep.kind == "sweep":
        axes["sweep"] = {
            "ranking": [promotion.brief(c) for c in ranked_all],
            "promoted": [],
            "why": "one-phase sweep: ranked, nothing to promote",
        }
    else:
        for axis in promotion.AXES:
            ranked = promotion.axis_cells(ranked_all, axis)
            picks, why = promotion.choose(ranked, plan.finalists)
            axes[axis] = {
                "ranking": [promotion.brief(c) for c in ranked],
                "promoted": [c["cell"] for c in picks],
                "why": why,
            }
            chosen.update((c["cell"], c) for c in picks)
    if cells_override is not None:
        by = {c["cell"]: c for c in ranked_all}
        unknown = [c for c in cells_override if c not in by]
        if unknown:
            raise Conflict(f"unknown cells {unknown}; choose from {sorted(by)}")
        chosen = {c: by[c] for c in cells_override}
    refusal = _finalists_budget_refusal(engine, pricing, sweep, plan, len(chosen))
    if refusal:
        add_event(engine, sweep_id=sweep_id, kind="budget", reason=refusal)
        chosen = {}
    runs = []
    for cell, c in chosen.items():
        for seed in plan.finalists.seeds:
            cfg = dict(c["config"])
            cfg["max_tokens"] = plan.finalists.max_tokens
            cfg["runtime"] = {**cfg.get("runtime", {}), "seed": seed}
            if plan.finalists.early_stop_patience:
                cfg["eval"] = {
                    **cfg.get("eval", {}),
                    "early_stop_patience": plan.finalists.early_stop_patience,
                }
            runs.append(
                {
                    "cfg": validate(cfg),
                    "cell": cell,
                    "is_baseline": c["is_baseline"],
                    "launcher": plan.launcher,
                }
            )
    decision = {
        "who": who,
        "axes": axes,
        "finalists": sorted(chosen),
        "ablation": promotion.ablation_findings(
            ranked_all,
            plan,
            [e["data"] for e in events(engine, sweep_id=sweep_id, kinds=("infeasible",))],
        ),
    }
    decision["created_runs"] = add_finalists(
        engine,
        sweep_id=sweep_id,
        runs=runs,
        phase="finalists" if chosen else "done",
        decision=decision,
        reason=f"{who} promotion: finalists {sorted(chosen) or 'none'}",
    )
    write_decisions(engine, sweep_id)
    write_summary(engine, sweep_id, report_dir(sweep), pricing)
    return decision


def _finalists_budget_refusal(
    engine: Engine, pricing: Pricing, sweep: Sweep, plan: PlanSpec, cells: int
) -> str | None:
    """Refuse a promotion whose forecast would cross the sweep's budget cap."""
    if not sweep.budget_usd or not cells:
        return None
    spent = sweep_cost(engine, sweep.id)["spent_usd"]
    tokens = cells * len(plan.finalists.seeds) * plan.finalists.max_tokens
    acc = pricing.accelerator
    ahead = pricing.forecast(
        tokens,
        accelerator=acc,
        spot=pricing.spot,
        tokens_per_s=measured_tokens_per_s(engine, sweep.id, acc),
    )["usd"]
    if spent + ahead > sweep.budget_usd:
        return (
            f"budget: promoting {cells} cells x {len(plan.finalists.seeds)} seeds x "
            f"{plan.finalists.max_tokens:,} tokens is forecast at ${ahead:.2f}; with "
            f"${spent:.2f} spent that crosses the cap ${sweep.budget_usd:.2f}. Raise "
            "budget_usd, or promote fewer cells or seeds by hand."
        )
    return None


def advance(engine: Engine, pricing: Pricing) -> None:
    """The scheduler's hook: promote finished ranking phases, close finished sweeps (their
    report is written then)."""
    for sw in list_sweeps(engine, status="active"):
        runs = sweep_runs(engine, sweep_id=sw.id)
        if sw.phase == "ranking" and phase_finished([r for r in runs if r.phase in PHASE1]):
            promote(engine, sw.id, pricing=pricing)
        elif sw.phase == "finalists" and phase_finished(
            [r for r in runs if r.phase == "finalists"]
        ):
            close_sweep(engine, sweep_id=sw.id, reason="finalists finished: sweep done")
            # pandas and matplotlib load here, once a sweep ends, not at every service start
            from runner.study.report import write_report

            try:
                write_report(engine, sw.id, pricing)
            except Exception as e:  # a report problem must not stop the scheduler
                add_event(engine, sweep_id=sw.id, kind="report", reason=f"report failed: {e}")
                write_decisions(engine, sw.id)
