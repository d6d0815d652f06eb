"""The result document (metrics.json, docs/metrics.md) as the ledger accepts it: known fields
typed and bounded, unknown ones kept (adding a field does not bump the schema version), the
whole nested no deeper than MAX_DEPTH. Checked before any document is stored, whoever brings
it (a trainer's post, a run folder, an import); `showable` keeps readers safe from documents a
ledger holds from before these checks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic import Field as PField

from runner.ledger.models import whole
from trainer.config import describe_errors

MAX_DEPTH = 24  # metrics.json nests 5 levels; the rest is a margin, not an invitation

NonNegative = whole(0, 2**62)
Finite = Annotated[float, PField(allow_inf_nan=False)]
Text = Annotated[str, PField(max_length=10_000)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class ResultRun(_Doc):
    status: Literal["succeeded", "killed", "failed", "preempted"]
    exit_code: whole(-255, 255) | None = None
    exit_reason: str | None = PField(None, max_length=10_000)
    attempts: NonNegative | None = None
    finished_at: Finite | None = None


class ResultTraining(_Doc):
    steps: NonNegative | None = None
    tokens_seen: NonNegative | None = None
    wall_time_s: Finite | None = None
    train_loss: Finite | None = None
    tokens_per_s: Finite | None = None


class ResultSplit(_Doc):
    loss: Finite | None = None
    token_ppl: Finite | None = None
    word_ppl: Finite | None = None
    bits_per_byte: Finite | None = None


class ResultEval(ResultSplit):
    step: NonNegative | None = None
    tokens: NonNegative | None = None


class ResultProvenance(_Doc):
    sample: bool | None = PField(None, strict=True)


class ResultLatency(_Doc):
    median_ms: Finite | None = None
    p90_ms: Finite | None = None


class ResultWindow(_Doc):
    """When latency was measured (wall clock), and the other processes' CPU use then."""

    start: Finite | None = None
    end: Finite | None = None
    other_cpu_cores: Finite | None = None


class ResultMemory(_Doc):
    kind: str | None = None
    bytes: NonNegative | None = None


class SmallBenchTask(_Doc):
    field: Text | None = None
    n: NonNegative | None = None
    correct: NonNegative | None = None
    acc: Finite | None = None
    stderr: Finite | None = None


class ResultSmallBench(_Doc):
    tasks: dict[Text, SmallBenchTask] | None = None
    macro_acc: Finite | None = None
    macro_stderr: Finite | None = None
    skipped: Text | None = None


class ResultFinalModel(_Doc):
    kind: Literal["best", "last"] | None = None
    step: NonNegative | None = None
    tokens: NonNegative | None = None


class ResultDoc(_Doc):
    schema_version: whole(1, 1000) | None = None
    run: ResultRun
    config: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    provenance: ResultProvenance | None = None
    training: ResultTraining | None = None
    dev_curve: list[ResultEval] | None = None
    dev: ResultSplit | None = None
    test: ResultSplit | None = None
    smallbench: ResultSmallBench | None = None
    latency: dict[Text, ResultLatency] | None = None
    decode_latency: dict[Text, dict[Text, Finite | int | None]] | None = None
    latency_contended: bool | None = None
    latency_window: ResultWindow | None = None
    latency_shared_runs: NonNegative | None = None  # the ledger's count, added at storing
    memory: ResultMemory | None = None
    throughput: dict[Text, Finite | Text | None] | None = None
    params: dict[Text, NonNegative] | None = None
    final_model: ResultFinalModel | None = None
    timings: dict[Text, Finite] | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_too_deep(cls, doc):
        if depth(doc) > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels (docs/metrics.md)")
        return doc


def depth(doc: Any, limit: int = MAX_DEPTH) -> int:
    """How deep `doc` nests (lists and objects), counting no further than limit + 1: without
    recursion, so a document nested past any stack is measured, not crashed on."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, d)
            if d > limit:
                return d
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def check_result(doc: Any) -> ResultDoc:
    """The document, typed; ValueError naming what is wrong (the field, or the depth)."""
    if not isinstance(doc, dict):
        raise ValueError("result: a metrics.json document is a JSON object")
    try:
        return ResultDoc.model_validate(doc)
    except ValidationError as e:
        raise ValueError(
            "result: not a metrics.json document (docs/metrics.md): "
            + describe_errors(e.errors(), "result")
        ) from None


def showable(doc: Any) -> dict | None:
    """A stored document as pages and the API show it: itself when it passes `check_result`,
    else only a note (a ledger may hold documents from before these checks)."""
    if doc is None:
        return None
    try:
        check_result(doc)
    except ValueError as e:
        return {"unshowable": str(e)[:500]}
    return doc
