"""The kill rule: stop a run that has trailed the baseline for long enough.

On every dev-PPL point, the run's curve is compared with the baseline's at the same tokens seen
(the baseline linearly interpolated; no decision where the baseline has not got that far yet).
The run is stopped once it has been at least `margin` worse (absolute PPL, or relative) over a
stretch of at least `window_tokens` that ends at its newest point.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.engine import Engine


class KillRuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="Apply the rule in this sweep.")
    margin: float = Field(
        0.5,
        gt=0,
        description="How much worse counts as trailing: PPL "
        "points, or a fraction of the baseline's PPL when relative.",
    )
    relative: bool = Field(False, description="Read margin as a fraction (0.05 = 5%).")
    window_tokens: int = Field(1_000_000, ge=0, description="How long it must trail.")
    metric: str = Field(
        "dev/word_ppl",
        description="The curve compared (word-level PPL: "
        "comparable across vocab sizes, as token PPL is not).",
    )

    @model_validator(mode="before")
    @classmethod
    def _counts(cls, d):
        from trainer.params import parse_count

        if isinstance(d, dict) and isinstance(d.get("window_tokens"), str):
            d = {**d, "window_tokens": parse_count(d["window_tokens"])}
        return d


@dataclass(frozen=True)
class Verdict:
    kill: bool
    reason: str
    evidence: dict


def evaluate(
    run: list[tuple[int, float]], baseline: list[tuple[int, float]], spec: KillRuleSpec
) -> Verdict:
    """run, baseline: (tokens, ppl) points, any order. Pure: the table-driven tests call it."""
    if not run or not baseline:
        return Verdict(False, "no curve to compare yet", {})
    run = sorted(run)
    base = sorted(baseline)
    bt = np.array([t for t, _ in base], dtype=float)
    bv = np.array([v for _, v in base], dtype=float)
    comparable = [(t, v) for t, v in run if bt[0] <= t <= bt[-1]]
    if not comparable:
        return Verdict(False, "the baseline has not reached this run's tokens yet", {})
    tokens = np.array([t for t, _ in comparable], dtype=float)
    values = np.array([v for _, v in comparable], dtype=float)
    ref = np.interp(tokens, bt, bv)
    gap = values - ref
    worse = gap / ref >= spec.margin if spec.relative else gap >= spec.margin
    if not worse[-1]:
        return Verdict(False, "not trailing the baseline now", {})
    # the stretch of consecutive trailing points that ends at the newest comparable point
    start = len(worse) - 1
    while start > 0 and worse[start - 1]:
        start -= 1
    span = tokens[-1] - tokens[start]
    unit = f"{spec.margin:.0%}" if spec.relative else f"{spec.margin:g} PPL"
    evidence = {
        "metric": spec.metric,
        "margin": spec.margin,
        "relative": spec.relative,
        "window_tokens": spec.window_tokens,
        "trailing_from_tokens": int(tokens[start]),
        "trailing_tokens": int(span),
        "run": [[int(t), float(v)] for t, v in zip(tokens[start:], values[start:], strict=True)],
        "baseline": [[int(t), float(v)] for t, v in zip(tokens[start:], ref[start:], strict=True)],
    }
    if span >= spec.window_tokens:
        return Verdict(
            True,
            f"{spec.metric} trailed the baseline by >= {unit} for "
            f"{int(span):,} tokens (window {spec.window_tokens:,}): last "
            f"{values[-1]:.2f} vs {ref[-1]:.2f}",
            evidence,
        )
    return Verdict(False, f"trailing for {int(span):,} of {spec.window_tokens:,} tokens", evidence)


def curve(engine: Engine, run_id: int, metric: str) -> list[tuple[int, float]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT tokens, value FROM metric_points WHERE run_id = ? AND name = ? ORDER BY tokens",
            (run_id, metric),
        ).all()
    return [(int(t), float(v)) for t, v in rows]


_SPECS: dict[tuple[int, int], KillRuleSpec] = {}


def sweep_spec(engine: Engine, sweep_id: int) -> KillRuleSpec:
    """A sweep's kill rule (its plan never changes after submission, so it is read once)."""
    key = (id(engine), sweep_id)
    if key not in _SPECS:
        with engine.connect() as conn:
            spec_json = conn.exec_driver_sql(
                "SELECT spec_json FROM sweeps WHERE id = ?", (sweep_id,)
            ).scalar()
        _SPECS[key] = KillRuleSpec(**(json.loads(spec_json or "{}").get("kill_rule") or {}))
    return _SPECS[key]


def check(engine: Engine, run, points) -> str | None:
    """The service's hook on ingest: a stop reason, or None. Only runs of a sweep with a
    baseline in the same phase are judged; the verdict and its evidence become an event."""
    from runner import crud

    if run.sweep_id is None:
        return None
    # most posts carry no point of the compared curve: decide that before touching the ledger
    spec = sweep_spec(engine, run.sweep_id)
    if not spec.enabled or not any(p[0] == spec.metric for p in points):
        return None
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT is_baseline, seed FROM runs WHERE id = ?", (run.id,)
        ).first()
        if row is None or row[0]:
            return None
        base = conn.exec_driver_sql(
            "SELECT id FROM runs WHERE sweep_id = ? AND phase IS ? AND is_baseline "
            "ORDER BY (seed = ?) DESC, id LIMIT 1",
            (run.sweep_id, run.phase, row[1]),
        ).first()
    if base is None:
        return None
    verdict = evaluate(
        curve(engine, run.id, spec.metric), curve(engine, base[0], spec.metric), spec
    )
    if not verdict.kill:
        return None
    evidence = {**verdict.evidence, "baseline_run": base[0]}
    crud.move(
        engine,
        run_id=run.id,
        to="killed",
        only_from=("launching", "running", "queued"),
        reason=f"kill rule: {verdict.reason}",
        event_data=evidence,
    )
    return f"kill rule: {verdict.reason}"
