"""The kill rule: stop a run that has trailed the baseline for long enough.

On every dev-PPL point, the run's curve is compared with the baseline's at the same tokens seen
(the baseline linearly interpolated; no decision where the baseline has not got that far yet).
The run is told to stop once it has been at least `margin` worse (absolute PPL, or relative)
over a stretch of at least `window_tokens` that ends at its newest point. The verdict is a
decision, recorded with its evidence; the run becomes `killed` when its trainer exits (after its
final evaluation), through the same path as every other exit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from runner.ledger import crud, queries
from trainer.config import Count


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
    window_tokens: Count = Field(1_000_000, ge=0, le=10**12, description="How long it must trail.")
    metric: str = Field(
        "dev/word_ppl",
        description="The curve compared (word-level PPL: "
        "comparable across vocab sizes, as token PPL is not).",
    )


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


class KillRule:
    """The service's kill rule on ingest. Holds each sweep's rule (a plan never changes after
    submission, so it is read once per sweep and kept here, on the app's instance)."""

    def __init__(self, on_verdict=None):
        self.specs: dict[int, KillRuleSpec] = {}
        self.on_verdict = on_verdict  # e.g. rewrite the sweep's decisions.md

    def spec_for(self, engine: Engine, sweep_id: int) -> KillRuleSpec:
        if sweep_id not in self.specs:
            plan = json.loads(crud.get_sweep(engine, sweep_id=sweep_id).spec_json or "{}")
            self.specs[sweep_id] = KillRuleSpec(**(plan.get("kill_rule") or {}))
        return self.specs[sweep_id]

    def answer(self, engine: Engine, run: crud.RunRef, points) -> tuple[str, str | None]:
        """The answer to a trainer's post: stop when the run is finished or told to stop, or when
        this post's points make the rule's verdict a kill (recorded as a decision with its
        evidence; the run ends when its exit arrives). Only runs of a sweep with a baseline in
        the same phase are judged, and the baseline never is."""
        action, reason = crud.stop_answer(run)
        if action == "stop" or run.sweep_id is None or run.is_baseline:
            return action, reason
        # most posts carry no point of the compared curve: decide that before reading more
        spec = self.spec_for(engine, run.sweep_id)
        if not spec.enabled or not any(p[0] == spec.metric for p in points):
            return "continue", None
        base = queries.baseline_run(engine, sweep_id=run.sweep_id, phase=run.phase, seed=run.seed)
        if base is None:
            return "continue", None
        verdict = evaluate(
            queries.curve(engine, run.id, spec.metric),
            queries.curve(engine, base, spec.metric),
            spec,
        )
        if not verdict.kill:
            return "continue", None
        reason = f"kill rule: {verdict.reason}"
        evidence = {**verdict.evidence, "baseline_run": base}
        first = crud.request_stop(
            engine, run_id=run.id, kind="kill", reason=reason, evidence=evidence
        )
        if first and self.on_verdict is not None:
            self.on_verdict(engine, run.sweep_id)
        return "stop", reason
