"""Experiment plans, the schema: a baseline, the axes around it, the micro-ablation, controls,
promotion settings, the kill rule and a budget; and the phase-1 cells a plan expands to. Pure
code: validated here, written to the ledger by `runner.study.sweeps`.

A study sweep file (configs/embed_ratio.yaml: base + experiments) reads as a one-phase plan.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, ValidationError, model_validator

from runner.ledger.models import Strict
from runner.study.killrule import KillRuleSpec
from trainer.config import (
    ConfigError,
    Count,
    Label,
    Name,
    OptimSpec,
    deep_merge,
    describe_errors,
)
from trainer.params import parse_count
from trainer.safe_yaml import YamlRefused
from trainer.safe_yaml import load as load_yaml

PHASE1 = ("ranking", "ablation")
RANKING_MAX_TOKENS = 5_000_000
# Bounds on what one plan may ask for, checked before anything is built (each a 422 naming it):
# the study itself is 20-odd cells of 1-3 seeds.
MAX_AXIS_VALUES = 16  # values per axis of the grid
MAX_CONTROLS = 20
MAX_EXPERIMENTS = 200
MAX_OVERRIDES_BYTES = 16_384  # one control's overrides, as JSON
MAX_PHASE1_RUNS = 400  # ranking cells x seeds


def _bounded_dict(v: dict) -> dict:
    size = len(json.dumps(v, default=str))
    if size > MAX_OVERRIDES_BYTES:
        raise ValueError(f"is {size:,} bytes as JSON; at most {MAX_OVERRIDES_BYTES:,} are accepted")
    return v


Overrides = Annotated[dict[str, Any], AfterValidator(_bounded_dict)]


class Baseline(Strict):
    embedding_ratio: float = 0.35
    glu_expansion: float = 2.66
    vocab_size: int = 16000
    tied_lm_head: bool = True


class Ranking(Strict):
    max_tokens: Count = Field(
        5_000_000,
        ge=1,
        le=RANKING_MAX_TOKENS,
        description="Tokens per ranking run (the study caps them at 5M).",
    )
    seeds: list[int] = Field([1337], min_length=1, max_length=5)
    embedding_ratio: list[float] = Field([0.25, 0.35, 0.45], max_length=MAX_AXIS_VALUES)
    glu_expansion: list[float] = Field([2.0, 2.66, 3.0, 4.0], max_length=MAX_AXIS_VALUES)
    lr_grid: list[Annotated[float, Field(gt=0, le=100)]] = Field(
        [],
        max_length=5,
        description="Multipliers of the base optim.lr that every ranking and ablation cell "
        "trains at (e.g. [0.5, 1, 2]); each cell ranks at its best one, and its finalists "
        "train at it. The share and GLU axes move depth and width, so one LR favours some "
        "shapes. Must hold 1 (the baseline at the base LR is the kill rule's reference). "
        "Empty: the base LR only.",
    )

    @model_validator(mode="after")
    def _grid_holds_the_base(self) -> Ranking:
        if self.lr_grid and 1.0 not in self.lr_grid:
            raise ValueError(
                f"lr_grid {self.lr_grid} must hold 1 (the base optim.lr, the baseline the kill "
                "rule compares with), e.g. [0.5, 1, 2]"
            )
        if len(set(self.lr_grid)) != len(self.lr_grid):
            raise ValueError(f"lr_grid {self.lr_grid} repeats a value")
        return self


class Ablation(Strict):
    vocab_sizes: list[int] = Field([8000, 16000], max_length=MAX_AXIS_VALUES)
    tied: list[bool] = Field([True, False], max_length=2)
    embedding_ratio: list[float] = Field([0.25, 0.35, 0.45], max_length=MAX_AXIS_VALUES)


class Finalists(Strict):
    max_tokens: Count = Field(
        30_000_000, ge=1, le=10**12, description="Full budget per finalist run."
    )
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


class Control(Strict):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    overrides: Overrides = Field(description="Config overrides on the baseline cell.")


class PlanSpec(Strict):
    name: Label
    description: str = Field("", max_length=10_000)
    base: Overrides = Field(
        default_factory=dict,
        description="Train config shared by every cell (model knobs come from the cell).",
    )
    baseline: Baseline = Field(default_factory=Baseline)
    ranking: Ranking = Field(default_factory=Ranking)
    ablation: Ablation | None = None
    finalists: Finalists = Field(default_factory=Finalists)
    controls: list[Control] = Field([], max_length=MAX_CONTROLS)
    kill_rule: KillRuleSpec = Field(default_factory=KillRuleSpec)
    budget_usd: float | None = Field(None, gt=0, le=1e9, allow_inf_nan=False)
    launcher: Literal["local", "docker", "skypilot", "worker"] | None = Field(
        None, description="Where its runs train (unset: the service's own launcher)."
    )
    experiments: dict[Name, Overrides] = Field(
        default_factory=dict,
        max_length=MAX_EXPERIMENTS,
        description="A one-phase sweep's cells (a study sweep file read as a plan).",
    )

    @model_validator(mode="after")
    def _runs_within_bounds(self) -> PlanSpec:
        n = (len(cells(self)) + len(self.experiments)) * len(self.ranking.seeds)
        if n > MAX_PHASE1_RUNS:
            raise ValueError(
                f"the plan asks for {n:,} ranking runs (cells x seeds); at most "
                f"{MAX_PHASE1_RUNS} are accepted: split it into several plans"
            )
        return self


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
            "lr_of": cell,  # the shape this cell's runs train (itself, unless an LR variant)
            "lr_mult": 1.0,
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
    shapes = list(out.values())
    base_lr = (plan.base.get("optim") or {}).get("lr", OptimSpec.model_fields["lr"].default)
    for c in shapes:  # the LR grid: each shape at every multiplier (controls never)
        for m in plan.ranking.lr_grid:
            if m != 1.0:
                extra = deep_merge(c["extra"], {"optim": {"lr": base_lr * m}})
                name = lr_cell(c["cell"], m)
                out[name] = {**c, "cell": name, "is_baseline": False, "extra": extra,
                             "lr_mult": m}  # fmt: skip
    for c in plan.controls:
        add(f"control-{c.name}", "control", "ranking", b, c.overrides)
    return list(out.values())


LR_SUFFIX = re.compile(r"^(?P<cell>.+)-lr(?P<mult>[0-9]+(?:\.[0-9]+)?)x$")


def lr_cell(cell: str, mult: float) -> str:
    """The name of a cell's run at `mult` x the base LR (emb25 at 0.5x: emb25-lr0.5x)."""
    return f"{cell}-lr{mult:g}x"


def split_lr(cell: str) -> tuple[str, float]:
    """(the shape's cell, its LR multiplier): emb25-lr0.5x -> (emb25, 0.5); emb25 -> (emb25, 1)."""
    m = LR_SUFFIX.match(cell or "")
    return (m["cell"], float(m["mult"])) if m else (cell, 1.0)


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


class SweepFile(Strict):
    """A study sweep file (configs/embed_ratio.yaml): base + named experiments."""

    name: Label = "sweep"
    description: str = Field("", max_length=10_000)
    base: Overrides = Field(default_factory=dict)
    experiments: dict[Name, Overrides | None] = Field(min_length=1, max_length=MAX_EXPERIMENTS)
    plan: Any = None  # accepted (and ignored), as `pax train` accepts it


def parse_plan(doc: dict) -> tuple[PlanSpec, str]:
    """A plan, or a study sweep file (base + experiments) read as a one-phase plan."""
    try:
        if "experiments" in doc and "ranking" not in doc:
            return _sweep_file_as_plan(SweepFile.model_validate(doc)), "sweep"
        return PlanSpec.model_validate(doc), "plan"
    except ValidationError as e:
        raise ConfigError("invalid plan: " + describe_errors(e.errors(), "plan")) from None


def _sweep_file_as_plan(doc: SweepFile) -> PlanSpec:
    """Each experiment is a cell; the one whose model equals the base's is the baseline; no
    promotion."""
    try:
        tokens = parse_count(doc.base.get("max_tokens", RANKING_MAX_TOKENS))
    except (ValueError, TypeError):
        raise ConfigError(
            f"invalid plan: base.max_tokens={doc.base.get('max_tokens')!r}: use a count such as "
            "5M or 5000000"
        ) from None
    return PlanSpec(
        name=doc.name,
        description=doc.description,
        base=doc.base,
        ranking=Ranking(
            max_tokens=max(1, min(tokens, RANKING_MAX_TOKENS)), embedding_ratio=[], glu_expansion=[]
        ),
        finalists=Finalists(top_k=1, seeds=[1]),
        experiments={k: v or {} for k, v in doc.experiments.items()},
    )


def load_plan_text(text: str) -> tuple[PlanSpec, str]:
    try:
        doc = load_yaml(text)
    except YamlRefused as e:
        raise ConfigError(f"plan: {e} (see configs/plan_10m.yaml)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"plan: not valid YAML or JSON ({e})") from None
    except RecursionError:
        raise ConfigError(
            "plan: nested too deeply to be a plan (see configs/plan_10m.yaml)"
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError("plan: expected a mapping (see configs/plan_10m.yaml)")
    return parse_plan(doc)
