"""The kill rule: stop a run that has trailed the baseline, by more than noise, for long enough.

On every dev-PPL point of a run, and of its baseline (a run that got ahead of the baseline is
judged again when the baseline catches up), the run's curve is compared with the baseline's at
the same amount of text seen: tokens x bytes per token, which is plain tokens when both use one
vocabulary, and which does not penalise a small vocabulary for seeing less text per token (an 8k
model has seen 7.2% less text than a 16k one at equal tokens). The baseline is linearly
interpolated, and several baseline seeds are averaged. No decision before the run has spent
`min_fraction` of its budget (the trailing stretch counts from there: a slow starter's early
points never count), after it has spent `max_fraction` (a kill there would land after the run
finished), nor where the baseline has not got that far.

"Worse" means worse than the larger of two margins: `margin` (a fraction of the baseline's PPL
by default, 5%; absolute PPL points when `relative` is false) and `sigmas` times the baseline's
seed spread at that point (when two or more baseline seeds exist). The run is told to stop once
it has been worse over a stretch of at least `window_tokens` (in the baseline's tokens) ending
at its newest point.

The verdict is a decision, recorded with its evidence (both curves, the margins used); the run
becomes `killed` when its trainer exits (after its final evaluation), through the same path as
every other exit. The rule judges ranking and ablation runs only: never a baseline, never a
finalist.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from runner.ledger.runs import RunRef, baseline_runs, judged_runs
from runner.ledger.series import curve
from runner.ledger.stops import request_stop, stop_answer
from runner.ledger.sweeps import get_sweep
from trainer.config import Count

JUDGED_PHASES = (None, "ranking", "ablation")  # never "finalists"


class KillRuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="Apply the rule in this sweep.")
    margin: float = Field(
        0.05,
        gt=0,
        description="How much worse counts as trailing: a fraction of the baseline's PPL "
        "(0.05 = 5%), or PPL points when relative is false.",
    )
    relative: bool = Field(True, description="Read margin as a fraction of the baseline's PPL.")
    sigmas: float = Field(
        2.0,
        ge=0,
        le=100,
        description="...or this many baseline seed standard deviations, whichever is larger "
        "(used when the baseline has two or more seeds; 0 = off).",
    )
    min_fraction: float = Field(
        0.4,
        ge=0,
        le=1,
        description="No judgement before the run has spent this fraction of its token budget; "
        "the trailing window starts there too.",
    )
    max_fraction: float = Field(
        0.9,
        ge=0,
        le=1,
        description="No judgement after this fraction of the budget: a kill there would arrive "
        "after the run has finished (1 = judge to the end).",
    )
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


Curve = list[tuple[int, float]]


def evaluate(
    run: Curve,
    baseline: Curve | list[Curve],
    spec: KillRuleSpec,
    *,
    budget_tokens: int | None = None,
    scale: float = 1.0,
) -> Verdict:
    """run: (tokens, ppl) points; baseline: the same for one baseline run or for each of its
    seeds; `scale`: the run's bytes per token over the baseline's (a run token is worth
    `scale` baseline tokens of text). Pure: the table-driven tests call it."""
    seeds = [
        sorted(c)
        for c in (baseline if baseline and isinstance(baseline[0], list) else [baseline])
        if c
    ]
    if not run or not seeds:
        return Verdict(False, "no curve to compare yet", {})
    run = sorted(run)
    if budget_tokens and run[-1][0] < spec.min_fraction * budget_tokens:
        return Verdict(
            False,
            f"no judgement before {spec.min_fraction:.0%} of the budget "
            f"({int(spec.min_fraction * budget_tokens):,} tokens)",
            {},
        )
    if budget_tokens and spec.max_fraction < 1 and run[-1][0] > spec.max_fraction * budget_tokens:
        return Verdict(
            False,
            f"no judgement in the last {1 - spec.max_fraction:.0%} of the budget (a kill would "
            "arrive after the run has finished)",
            {},
        )
    if budget_tokens:  # the trailing window starts at the guard, never before it
        run = [p for p in run if p[0] >= spec.min_fraction * budget_tokens]
    lo = max(c[0][0] for c in seeds)
    hi = min(c[-1][0] for c in seeds)
    comparable = [(t, t * scale, v) for t, v in run if lo <= t * scale <= hi]
    if not comparable:
        return Verdict(False, "the baseline has not reached this run's text seen yet", {})
    tokens = np.array([t for t, _, _ in comparable], dtype=float)
    x = np.array([e for _, e, _ in comparable], dtype=float)
    values = np.array([v for _, _, v in comparable], dtype=float)
    at = np.array([np.interp(x, [t for t, _ in c], [v for _, v in c]) for c in seeds], dtype=float)
    ref = at.mean(axis=0)
    spread = at.std(axis=0, ddof=1) if len(seeds) > 1 else np.zeros_like(ref)
    by_margin = spec.margin * ref if spec.relative else np.full_like(ref, spec.margin)
    by_noise = spec.sigmas * spread
    need = np.maximum(by_margin, by_noise)
    gap = values - ref
    worse = gap >= need
    if not worse[-1]:
        return Verdict(False, "not trailing the baseline by more than the margin now", {})
    # the stretch of consecutive trailing points that ends at the newest comparable point
    start = len(worse) - 1
    while start > 0 and worse[start - 1]:
        start -= 1
    # to the nearest token: two runs on one tokenizer have a text-per-token ratio of 1 only up
    # to rounding (0.9999999999999999 made a stretch exactly one window long fall short of it)
    span = round(x[-1] - x[start])
    last = len(values) - 1
    evidence = {
        "metric": spec.metric,
        "margin": spec.margin,
        "relative": spec.relative,
        "sigmas": spec.sigmas,
        "baseline_seeds": len(seeds),
        "window_tokens": spec.window_tokens,
        "min_fraction": spec.min_fraction,
        "max_fraction": spec.max_fraction,
        "bytes_per_token_ratio": scale,
        "trailing_from_tokens": int(tokens[start]),
        "trailing_tokens": int(span),
        "gap_relative": float(gap[last] / ref[last]),
        "gap_sigmas": float(gap[last] / spread[last]) if spread[last] > 0 else None,
        "margin_used": float(need[last]),
        "run": [[int(t), float(v)] for t, v in zip(tokens[start:], values[start:], strict=True)],
        "baseline": [[round(t), float(v)] for t, v in zip(x[start:], ref[start:], strict=True)],
    }
    if span >= spec.window_tokens:
        sig = f", {evidence['gap_sigmas']:.1f} sigma" if evidence["gap_sigmas"] is not None else ""
        margin = describe_margin(spec, need[last], ref[last])
        return Verdict(
            True,
            f"{spec.metric} trailed the baseline by more than {margin} for "
            f"{int(span):,} tokens (window {spec.window_tokens:,}): last "
            f"{values[-1]:.2f} vs {ref[-1]:.2f} ({100 * evidence['gap_relative']:+.1f}%{sig})",
            evidence,
        )
    return Verdict(False, f"trailing for {int(span):,} of {spec.window_tokens:,} tokens", evidence)


def describe_margin(spec: KillRuleSpec, used: float, ref: float) -> str:
    """The margin as it applied: the configured one, or the seed spread's when larger."""
    configured = spec.margin * ref if spec.relative else spec.margin
    if used > configured + 1e-12:
        return f"{spec.sigmas:g} seed sigma ({used:.2f} PPL)"
    return f"{spec.margin:.0%}" if spec.relative else f"{spec.margin:g} PPL"


def bytes_per_token(curve_loss: Curve, curve_bpb: Curve) -> float | None:
    """Text per token of a run, from its own dev evals: loss (nats/token) over ln 2 x bits per
    byte is the split's bytes per token."""
    if not curve_loss or not curve_bpb or curve_bpb[-1][1] <= 0:
        return None
    return curve_loss[-1][1] / (math.log(2) * curve_bpb[-1][1])


class KillRule:
    """The service's kill rule on ingest. Holds each sweep's rule (a plan never changes after
    submission, so it is read once per sweep and kept here, on the app's instance)."""

    def __init__(self, on_verdict=None):
        self.specs: dict[int, KillRuleSpec] = {}
        self.on_verdict = on_verdict  # e.g. rewrite the sweep's decisions.md

    def spec_for(self, engine: Engine, sweep_id: int) -> KillRuleSpec:
        if sweep_id not in self.specs:
            plan = json.loads(get_sweep(engine, sweep_id=sweep_id).spec_json or "{}")
            self.specs[sweep_id] = KillRuleSpec(**(plan.get("kill_rule") or {}))
        return self.specs[sweep_id]

    def answer(self, engine: Engine, run: RunRef, points) -> tuple[str, str | None]:
        """The answer to a trainer's post: stop when the run is finished or told to stop, or when
        this post's points make the rule's verdict a kill (recorded as a decision with its
        evidence; the run ends when its exit arrives). Only runs of a sweep with a baseline in
        the same phase are judged, and the baseline never is. A baseline's new point judges the
        phase's running runs again: a run that posted before the baseline had got as far was
        not comparable then, and would otherwise never be judged at that point (a run whose
        window lay wholly ahead of the baseline escaped the rule)."""
        action, reason = stop_answer(run)
        if action == "stop" or run.sweep_id is None:
            return action, reason
        # most posts carry no point of the compared curve: decide that before reading more
        spec = self.spec_for(engine, run.sweep_id)
        if not spec.enabled or not any(p[0] == spec.metric for p in points):
            return "continue", None
        if run.phase not in JUDGED_PHASES:
            return "continue", None
        if run.is_baseline:
            for other in judged_runs(engine, sweep_id=run.sweep_id, phase=run.phase):
                self.judge(engine, other, spec)
            return "continue", None
        return self.judge(engine, run, spec)

    def judge(self, engine: Engine, run: RunRef, spec: KillRuleSpec) -> tuple[str, str | None]:
        """The rule's verdict on a run's curve as it stands; a kill is recorded as a decision."""
        bases = baseline_runs(engine, sweep_id=run.sweep_id, phase=run.phase)
        if not bases:
            return "continue", None
        bpt = {
            rid: bytes_per_token(
                curve(engine, rid, "dev/loss"),
                curve(engine, rid, "dev/bits_per_byte"),
            )
            for rid in (run.id, bases[0])
        }
        scale = bpt[run.id] / bpt[bases[0]] if bpt[run.id] and bpt[bases[0]] else 1.0
        verdict = evaluate(
            curve(engine, run.id, spec.metric),
            [curve(engine, b, spec.metric) for b in bases],
            spec,
            budget_tokens=run.max_tokens,
            scale=scale,
        )
        if not verdict.kill:
            return "continue", None
        reason = f"kill rule: {verdict.reason}"
        evidence = {**verdict.evidence, "baseline_run": bases[0]}
        first = request_stop(engine, run_id=run.id, kind="kill", reason=reason, evidence=evidence)
        if first and self.on_verdict is not None:
            self.on_verdict(engine, run.sweep_id)
        return "stop", reason
