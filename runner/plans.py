"""Experiment plans: ranking (+ micro-ablation) -> promotion -> seed-replicated finalists.

A plan YAML names a baseline and the axes around it. Submitting it writes every phase-1 cell as
a queued run in one transaction (a refused cell becomes an `infeasible` event with the planner's
message). When phase 1 has finished, the best cells per axis are promoted (top 2 when the margin
is thin) and trained at the full budget with several seeds. Every decision is an event with its
evidence, and `decisions.md` in the sweep's report folder says the same in prose. All state is
in the ledger, so a restarted service picks up where it was: no cell runs twice (a unique index
on sweep, phase, cell, seed), none is forgotten.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from runner import crud
from runner.db import write_session
from runner.killrule import KillRuleSpec
from runner.models import FINISHED, Event, Run, Sweep
from trainer.config import ConfigError, deep_merge, validate
from trainer.params import parse_count

RANKING_MAX_TOKENS = 5_000_000
PHASE1 = ("ranking", "ablation")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Baseline(Strict):
    embedding_ratio: float = 0.35
    glu_expansion: float = 2.66
    vocab_size: int = 16000
    tied_lm_head: bool = True


def _count(v: Any) -> Any:
    return parse_count(v) if isinstance(v, str) else v


def _max_tokens_counts(d: Any) -> Any:
    """'5M' -> 5_000_000 in a section's max_tokens."""
    return (
        {**d, "max_tokens": _count(d["max_tokens"])}
        if isinstance(d, dict) and "max_tokens" in d
        else d
    )


class Ranking(Strict):
    max_tokens: int = Field(
        5_000_000,
        ge=1,
        le=RANKING_MAX_TOKENS,
        description="Tokens per ranking run (the study caps them at 5M).",
    )
    seeds: list[int] = Field([1337], min_length=1, max_length=5)
    embedding_ratio: list[float] = [0.25, 0.35, 0.45]
    glu_expansion: list[float] = [2.0, 2.66, 3.0, 4.0]

    @model_validator(mode="before")
    @classmethod
    def _counts(cls, d: Any) -> Any:
        return _max_tokens_counts(d)


class Ablation(Strict):
    vocab_sizes: list[int] = [8000, 16000]
    tied: list[bool] = [True, False]
    embedding_ratio: list[float] = [0.25, 0.35, 0.45]


class Finalists(Strict):
    max_tokens: int = Field(30_000_000, ge=1, description="Full budget per finalist run.")
    seeds: list[int] = Field([1, 2, 3], min_length=1, max_length=10)
    top_k: int = Field(1, ge=1, le=4, description="Cells promoted per axis.")
    thin_margin: float = Field(
        0.01,
        ge=0,
        description="Promote one more when the runner-up "
        "is within this relative dev-PPL gap of the best...",
    )
    use_seed_spread: bool = Field(True, description="...or within the best cell's seed spread.")
    early_stop_patience: int = Field(
        0,
        ge=0,
        description="Stop a finalist after this many "
        "dev evaluations without improvement (0 = off).",
    )

    @model_validator(mode="before")
    @classmethod
    def _counts(cls, d: Any) -> Any:
        return _max_tokens_counts(d)


class Control(Strict):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    overrides: dict[str, Any] = Field(description="Config overrides on the baseline cell.")


class PlanSpec(Strict):
    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    base: dict[str, Any] = Field(
        default_factory=dict,
        description="Train config shared by every cell (model knobs come from the cell).",
    )
    baseline: Baseline = Field(default_factory=Baseline)
    ranking: Ranking = Field(default_factory=Ranking)
    ablation: Ablation | None = None
    finalists: Finalists = Field(default_factory=Finalists)
    controls: list[Control] = []
    kill_rule: KillRuleSpec = Field(default_factory=KillRuleSpec)
    budget_usd: float | None = Field(None, gt=0)
    experiments: dict[str, dict] = Field(
        default_factory=dict,
        description="A one-phase sweep's cells (a study sweep file read as a plan).",
    )


def _label(v: float) -> str:
    return f"{v:g}".replace(".", "")


def _share(r: float) -> str:
    return f"{round(100 * r):d}"  # 0.25 -> 25, as in configs/embed_ratio.yaml


def cells(plan: PlanSpec) -> list[dict]:
    """Every phase-1 cell: {cell, axis, phase, baseline, overrides(model), config}."""
    b = plan.baseline.model_dump()
    out: dict[str, dict] = {}

    def add(cell, axis, phase, model, extra=None):
        if cell in out:
            return
        out[cell] = {
            "cell": cell,
            "axis": axis,
            "phase": phase,
            "model": model,
            "is_baseline": model == b and not extra,
            "extra": extra or {},
        }

    add("baseline", "baseline", "ranking", b)
    for r in plan.ranking.embedding_ratio:
        m = {**b, "embedding_ratio": r}
        add("baseline" if m == b else f"emb{_share(r)}", "embedding_ratio", "ranking", m)
    for g in plan.ranking.glu_expansion:
        m = {**b, "glu_expansion": g}
        add("baseline" if m == b else f"glu{_label(g)}x", "glu_expansion", "ranking", m)
    if plan.ablation:
        for V in plan.ablation.vocab_sizes:
            for tied in plan.ablation.tied:
                for r in plan.ablation.embedding_ratio:
                    m = {**b, "vocab_size": V, "tied_lm_head": tied, "embedding_ratio": r}
                    same = next((c for c in out.values() if c["model"] == m), None)
                    if same is not None:  # already a ranking cell: the same run serves both
                        continue
                    add(
                        f"v{V}-{'tied' if tied else 'untied'}-emb{_share(r)}",
                        "ablation",
                        "ranking",
                        m,
                    )
    for c in plan.controls:
        add(f"control-{c.name}", "control", "ranking", b, c.overrides)
    return list(out.values())


def cell_config(
    plan: PlanSpec, c: dict, *, seed: int, max_tokens: int, early_stop_patience: int = 0
) -> dict:
    cfg = deep_merge(plan.base, {"model": c["model"]})
    cfg = deep_merge(cfg, c.get("extra") or {})
    cfg["name"] = c["cell"]
    cfg["max_tokens"] = max_tokens
    cfg.setdefault("runtime", {})["seed"] = seed
    if early_stop_patience:
        cfg.setdefault("eval", {})["early_stop_patience"] = early_stop_patience
    return cfg


def parse_plan(doc: dict) -> tuple[PlanSpec, str]:
    """A plan, or a study sweep file (base + experiments) read as a one-phase plan."""
    if "experiments" in doc and "ranking" not in doc:
        return _sweep_file_as_plan(doc), "sweep"
    try:
        return PlanSpec.model_validate(doc), "plan"
    except ValidationError as e:
        raise ConfigError(
            "invalid plan: "
            + "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        ) from None


def _sweep_file_as_plan(doc: dict) -> PlanSpec:
    """configs/embed_ratio.yaml and friends: each experiment is a cell; the one whose model
    equals the base's is the baseline; no promotion."""
    base = doc.get("base") or {}
    spec = PlanSpec(
        name=doc.get("name") or "sweep",
        description=doc.get("description", ""),
        base=base,
        ranking=Ranking(
            max_tokens=min(_count(base.get("max_tokens", RANKING_MAX_TOKENS)), RANKING_MAX_TOKENS),
            embedding_ratio=[],
            glu_expansion=[],
        ),
        finalists=Finalists(top_k=1, seeds=[1]),
        experiments={k: v or {} for k, v in (doc.get("experiments") or {}).items()},
    )
    return spec


def load_plan_text(text: str) -> tuple[PlanSpec, str]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"plan: not valid YAML or JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ConfigError("plan: expected a mapping (see configs/plan_10m.yaml)")
    return parse_plan(doc)


# ---------------------------------------------------------------- submission


def submit(engine: Engine, plan: PlanSpec, kind: str, reports_root: Path) -> Sweep:
    """Validate every cell, then write the sweep, its queued runs and its infeasible cells in
    one transaction."""
    rows, infeasible = [], []
    if kind == "sweep":
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
            rows.append(
                dict(
                    cell=name,
                    axis="sweep",
                    phase="ranking",
                    cfg=tc,
                    is_baseline=same and not baseline_named,
                )
            )
            baseline_named = baseline_named or same
    else:
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
                    dict(
                        cell=c["cell"],
                        axis=c["axis"],
                        phase=c["phase"],
                        cfg=tc,
                        is_baseline=c["is_baseline"],
                    )
                )
    if not rows:
        raise ConfigError(
            "plan: no cell is feasible; "
            + "; ".join(f"{i['cell']}: {i['reason']}" for i in infeasible[:3])
        )
    t = crud.now()
    with write_session(engine) as s:
        sweep = Sweep(
            name=plan.name,
            kind=kind,
            spec_json=plan.model_dump_json(),
            status="active",
            phase="ranking",
            budget_usd=plan.budget_usd,
            created_at=t,
            updated_at=t,
        )
        s.add(sweep)
        s.flush()
        sweep.report_dir = str(Path(reports_root) / f"sweep-{sweep.id:04d}")
        s.add(
            Event(
                sweep_id=sweep.id,
                time=t,
                kind="sweep",
                reason=f"submitted {kind} "
                f"{plan.name!r}: {len(rows)} runs, {len(infeasible)} infeasible cells",
            )
        )
        for r in rows:
            crud.add_queued_run(
                s,
                r["cfg"],
                reason=f"cell {r['cell']} of sweep {sweep.id}",
                sweep_id=sweep.id,
                phase=r["phase"],
                cell=r["cell"],
                axis=r["axis"],
                is_baseline=r["is_baseline"],
                # the baseline leads: the kill rule compares with it
                priority=10 if r["is_baseline"] else 0,
            )
        for i in infeasible:
            s.add(
                Event(
                    sweep_id=sweep.id,
                    time=t,
                    kind="infeasible",
                    reason=i["reason"],
                    data_json=json.dumps(i),
                )
            )
        s.commit()
        s.refresh(sweep)
    write_decisions(engine, sweep.id)
    return sweep


# ---------------------------------------------------------------- ranking and promotion


def sweep_runs(engine: Engine, sweep_id: int, phase: str | None = None) -> list[Run]:
    q = select(Run).where(Run.sweep_id == sweep_id)
    if phase:
        q = q.where(Run.phase == phase)
    with Session(engine) as s:
        return list(s.exec(q.order_by(col(Run.id))).all())


def get_sweep(engine: Engine, sweep_id: int) -> Sweep:
    with Session(engine) as s:
        sw = s.get(Sweep, sweep_id)
    if sw is None:
        raise crud.NotFound(f"sweep {sweep_id} does not exist")
    return sw


def final_ppl(result: dict | None) -> float | None:
    if not result:
        return None
    dev = result.get("dev") or {}
    return dev.get("word_ppl")  # comparable across vocab sizes, unlike token PPL


def rank_cells(engine: Engine, runs: list[Run]) -> list[dict]:
    """Cells of finished runs: mean/std dev PPL over seeds, latency; best first. Killed runs
    rank after every finished one; failed runs are left out (they are events, not evidence)."""
    by_cell: dict[str, dict] = {}
    for r in runs:
        if r.status not in ("succeeded", "killed"):
            continue
        res = crud.get_result(engine, run_id=r.id)
        ppl = final_ppl(res)
        lat = (((res or {}).get("latency") or {}).get("seq128") or {}).get("median_ms")
        c = by_cell.setdefault(
            r.cell or r.name,
            {
                "cell": r.cell or r.name,
                "axis": r.axis,
                "ppls": [],
                "latency_ms": [],
                "killed": 0,
                "runs": [],
                "is_baseline": r.is_baseline,
                "config": json.loads(r.spec_json),
            },
        )
        c["runs"].append(r.id)
        if r.status == "killed":
            c["killed"] += 1
        if ppl is not None and math.isfinite(ppl):
            c["ppls"].append(ppl)
        if lat is not None:
            c["latency_ms"].append(lat)
    out = []
    for c in by_cell.values():
        ppls = c["ppls"]
        c["dev_ppl"] = statistics.fmean(ppls) if ppls else math.inf
        c["dev_ppl_std"] = statistics.stdev(ppls) if len(ppls) > 1 else 0.0
        c["latency_ms"] = statistics.fmean(c["latency_ms"]) if c["latency_ms"] else math.inf
        out.append(c)
    # killed cells last, then by PPL, ties broken by batch-1 latency
    return sorted(out, key=lambda c: (c["killed"] > 0, c["dev_ppl"], c["latency_ms"]))


def choose(ranked: list[dict], fin: Finalists) -> tuple[list[dict], str]:
    """The promoted cells of one axis, and why."""
    alive = [c for c in ranked if math.isfinite(c["dev_ppl"]) and not c["killed"]]
    if not alive:
        return [], "no finished, unkilled cell on this axis"
    k = fin.top_k
    best = alive[0]
    why = f"best dev PPL {best['dev_ppl']:.3f} ({best['cell']})"
    if len(alive) > k:
        nxt = alive[k]
        gap = (nxt["dev_ppl"] - alive[k - 1]["dev_ppl"]) / alive[k - 1]["dev_ppl"]
        spread = (
            fin.use_seed_spread
            and best["dev_ppl_std"] > 0
            and nxt["dev_ppl"] - alive[k - 1]["dev_ppl"] <= best["dev_ppl_std"]
        )
        if gap < fin.thin_margin or spread:
            k += 1
            why += (
                f"; thin margin: {nxt['cell']} is {100 * gap:.2f}% behind "
                f"(threshold {100 * fin.thin_margin:.2f}%"
                + (", within the seed spread" if spread else "")
                + ") so it is promoted too"
            )
        else:
            why += f"; next best {nxt['cell']} is {100 * gap:.2f}% behind"
    return alive[:k], why


def phase_finished(runs: list[Run]) -> bool:
    return bool(runs) and all(r.status in FINISHED for r in runs)


def promote(
    engine: Engine,
    sweep_id: int,
    *,
    cells_override: list[str] | None = None,
    force: bool = False,
    who: str = "automatic",
) -> dict:
    """Decide the finalists and queue them (idempotent: existing finalist runs are kept)."""
    sweep = get_sweep(engine, sweep_id)
    plan = PlanSpec.model_validate_json(sweep.spec_json)
    p1 = [r for r in sweep_runs(engine, sweep_id) if r.phase in PHASE1]
    if not force and not phase_finished(p1):
        waiting = sum(r.status not in FINISHED for r in p1)
        raise crud.Conflict(
            f"sweep {sweep_id}: {waiting} ranking runs are not finished; "
            "promote with force=true to decide on what has finished"
        )
    axes: dict[str, dict] = {}
    chosen: dict[str, dict] = {}
    ranked_all = rank_cells(engine, p1)
    for axis in ("embedding_ratio", "glu_expansion"):
        ranked = [
            c
            for c in ranked_all
            if c["axis"] in (axis, "baseline") or (c["is_baseline"] and c["axis"] != "control")
        ]
        picks, why = choose(ranked, plan.finalists)
        axes[axis] = {
            "ranking": [_brief(c) for c in ranked],
            "promoted": [c["cell"] for c in picks],
            "why": why,
        }
        for c in picks:
            chosen[c["cell"]] = c
    if sweep.kind == "sweep":
        axes = {
            "sweep": {
                "ranking": [_brief(c) for c in ranked_all],
                "promoted": [],
                "why": "one-phase sweep: ranked, nothing to promote",
            }
        }
        chosen = {}
    if cells_override is not None:
        by = {c["cell"]: c for c in ranked_all}
        unknown = [c for c in cells_override if c not in by]
        if unknown:
            raise crud.Conflict(f"unknown cells {unknown}; choose from {sorted(by)}")
        chosen = {c: by[c] for c in cells_override}
    created = []
    t = crud.now()
    refusal = _finalists_budget_refusal(engine, sweep, plan, len(chosen))
    if refusal:
        crud.add_event(engine, sweep_id=sweep_id, kind="budget", reason=refusal)
        chosen = {}
    with write_session(engine) as s:
        for cell, c in chosen.items():
            for seed in plan.finalists.seeds:
                exists = s.exec(
                    select(Run).where(
                        Run.sweep_id == sweep_id,
                        Run.phase == "finalists",
                        Run.cell == cell,
                        Run.seed == seed,
                    )
                ).first()
                if exists:
                    continue
                cfg = dict(c["config"])
                cfg["max_tokens"] = plan.finalists.max_tokens
                cfg.setdefault("runtime", {})["seed"] = seed
                if plan.finalists.early_stop_patience:
                    cfg.setdefault("eval", {})["early_stop_patience"] = (
                        plan.finalists.early_stop_patience
                    )
                run = crud.add_queued_run(
                    s,
                    validate(cfg),
                    reason=f"finalist {cell}, seed {seed}",
                    sweep_id=sweep_id,
                    phase="finalists",
                    cell=cell,
                    axis="finalist",
                    is_baseline=c["is_baseline"],
                    priority=5,
                )
                created.append(run.id)
        sw = s.get(Sweep, sweep_id)
        sw.phase = "finalists" if chosen else "done"
        sw.status = "active" if chosen else "done"
        sw.updated_at = t
        s.add(sw)
        decision = {
            "who": who,
            "axes": axes,
            "finalists": sorted(chosen),
            "created_runs": created,
            "ablation": ablation_findings(ranked_all, plan),
        }
        s.add(
            Event(
                sweep_id=sweep_id,
                time=t,
                kind="promotion",
                reason=f"{who} promotion: finalists {sorted(chosen) or 'none'}",
                data_json=json.dumps(decision, default=_num),
            )
        )
    write_decisions(engine, sweep_id)
    return decision


def _finalists_budget_refusal(
    engine: Engine, sweep: Sweep, plan: PlanSpec, cells: int
) -> str | None:
    """Refuse a promotion whose forecast would cross the sweep's budget cap."""
    from runner import cost

    if not sweep.budget_usd or not cells:
        return None
    spent = cost.sweep_cost(engine, sweep.id)["spent_usd"]
    tokens = cells * len(plan.finalists.seeds) * plan.finalists.max_tokens
    p = cost.PRICING
    ahead = cost.forecast_usd(engine, sweep.id, tokens, p["accelerator"], p["spot"], p["prices"])
    if spent + ahead > sweep.budget_usd:
        return (
            f"budget: promoting {cells} cells x {len(plan.finalists.seeds)} seeds x "
            f"{plan.finalists.max_tokens:,} tokens is forecast at ${ahead:.2f}; with "
            f"${spent:.2f} spent that crosses the cap ${sweep.budget_usd:.2f}. Raise "
            "budget_usd, or promote fewer cells or seeds by hand."
        )
    return None


def _num(x):
    return None if isinstance(x, float) and not math.isfinite(x) else str(x)


def _brief(c: dict) -> dict:
    return {
        "cell": c["cell"],
        "dev_ppl": c["dev_ppl"] if math.isfinite(c["dev_ppl"]) else None,
        "dev_ppl_std": c["dev_ppl_std"],
        "seeds": len(c["ppls"]),
        "killed": c["killed"],
        "latency_ms": c["latency_ms"] if math.isfinite(c["latency_ms"]) else None,
    }


def ablation_findings(ranked: list[dict], plan: PlanSpec) -> dict:
    """Does the best embedding share move with vocab size or tying?"""
    if not plan.ablation:
        return {}
    groups: dict[str, list[dict]] = {}
    for c in ranked:
        m = c["config"].get("model", {})
        if (
            c["axis"] in ("ablation", "embedding_ratio", "baseline")
            and math.isfinite(c["dev_ppl"])
            and not c["killed"]
        ):
            key = f"V={m.get('vocab_size')} {'tied' if m.get('tied_lm_head') else 'untied'}"
            groups.setdefault(key, []).append(c)
    best = {
        k: min(v, key=lambda c: c["dev_ppl"])["config"]["model"]["embedding_ratio"]
        for k, v in groups.items()
    }
    moves = len(set(best.values())) > 1
    return {
        "best_embedding_ratio": best,
        "moves": moves,
        "summary": (
            "the best embedding share moves with vocab size or tying"
            if moves
            else "the best embedding share does not move with vocab size or tying"
        )
        if best
        else "no finished ablation cells",
    }


def advance(engine: Engine) -> None:
    """The scheduler's hook: promote finished ranking phases, close finished sweeps."""
    with Session(engine) as s:
        active = list(s.exec(select(Sweep).where(Sweep.status == "active")).all())
    for sw in active:
        runs = sweep_runs(engine, sw.id)
        if sw.phase == "ranking" and phase_finished([r for r in runs if r.phase in PHASE1]):
            promote(engine, sw.id)
        elif sw.phase == "finalists" and phase_finished(
            [r for r in runs if r.phase == "finalists"]
        ):
            with write_session(engine) as s:
                x = s.get(Sweep, sw.id)
                x.phase, x.status, x.updated_at = "done", "done", crud.now()
                s.add(x)
                s.add(
                    Event(
                        sweep_id=sw.id,
                        time=crud.now(),
                        kind="sweep",
                        reason="finalists finished: sweep done",
                    )
                )
            write_decisions(engine, sw.id)
            try:
                from runner.report import write_report

                write_report(engine, sw.id)
            except Exception as e:  # a report problem must not stop the scheduler
                crud.add_event(engine, sweep_id=sw.id, kind="report", reason=f"report failed: {e}")


# ---------------------------------------------------------------- decisions.md


def write_decisions(engine: Engine, sweep_id: int) -> Path:
    sw = get_sweep(engine, sweep_id)
    evs = crud.events(engine, sweep_id=sweep_id, limit=100_000)
    lines = [
        f"# Decisions: sweep {sw.id} ({sw.name})",
        "",
        f"Kind: {sw.kind}. Phase: {sw.phase}. Status: {sw.status}.",
        "",
    ]
    inf = [e for e in evs if e.kind == "infeasible"]
    if inf:
        lines += ["## Infeasible cells (refused by the planner)", ""]
        lines += [f"- `{json.loads(e.data_json)['cell']}`: {e.reason}" for e in inf] + [""]
    kills = [e for e in evs if e.kind == "state" and e.to_status == "killed"]
    if kills:
        lines += ["## Kills", ""]
        for e in kills:
            d = json.loads(e.data_json) if e.data_json else {}
            lines.append(f"- run {e.run_id}: {e.reason}")
            if d.get("run"):
                lines.append(
                    f"  - run {d['run'][0]} .. {d['run'][-1]} vs baseline (run "
                    f"{d.get('baseline_run')}) {d['baseline'][0]} .. {d['baseline'][-1]}"
                    " (tokens, dev PPL)"
                )
        lines.append("")
    for e in evs:
        if e.kind != "promotion":
            continue
        d = json.loads(e.data_json)
        lines += [f"## Promotion ({d['who']})", ""]
        for axis, a in d["axes"].items():
            lines += [
                f"### {axis}",
                "",
                "| rank | cell | dev PPL | std | seeds | killed | latency ms |",
                "|---|---|---|---|---|---|---|",
            ]
            for i, c in enumerate(a["ranking"], 1):
                ppl = f"{c['dev_ppl']:.3f}" if c["dev_ppl"] is not None else "-"
                lat = f"{c['latency_ms']:.2f}" if c["latency_ms"] is not None else "-"
                lines.append(
                    f"| {i} | {c['cell']} | {ppl} | {c['dev_ppl_std']:.3f} | "
                    f"{c['seeds']} | {c['killed']} | {lat} |"
                )
            lines += ["", f"Promoted: {', '.join(a['promoted']) or 'none'}. Why: {a['why']}.", ""]
        if d.get("ablation"):
            lines += [
                "### Micro-ablation",
                "",
                d["ablation"]["summary"]
                + ": "
                + ", ".join(f"{k}: {v}" for k, v in d["ablation"]["best_embedding_ratio"].items()),
                "",
            ]
    out = Path(sw.report_dir or f"reports/sweep-{sw.id:04d}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "decisions.md").write_text("\n".join(lines) + "\n")
    return out / "decisions.md"
