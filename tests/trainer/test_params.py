import json

import pytest
import torch
from typer.testing import CliRunner

from pax.cli import app
from trainer.model import GPT
from trainer.params import (
    GLU_TOLERANCE,
    RATIO_TOLERANCE,
    TOTAL_TOLERANCE,
    count_params,
    parse_count,
    plan,
)

T = 10_000_000
RATIOS = (0.25, 0.35, 0.45)
GLUS = (2.0, 2.66, 3.0, 4.0)


def assert_inside(p, r, g):
    assert abs(p.total / T - 1) <= TOTAL_TOLERANCE
    assert abs(p.embedding_ratio - r) <= RATIO_TOLERANCE
    assert abs(p.glu_expansion / g - 1) <= GLU_TOLERANCE
    assert p.d_model % 8 == 0 and p.head_dim % 8 == 0 and p.d_model % p.n_heads == 0


@pytest.mark.parametrize("r", RATIOS)
@pytest.mark.parametrize("g", GLUS)
def test_study_grid_at_16k_tied_is_all_feasible(r, g):
    p = plan(T, r, g, 16000, True)
    assert_inside(p, r, g)
    with torch.device("meta"):  # counts without allocating 10M floats 12 times
        model = GPT.from_plan(p)
    counts = model.param_counts()
    assert counts["total"] == sum(t.numel() for t in model.parameters()) == p.total
    assert counts == {k: getattr(p, k) for k in counts}


@pytest.mark.parametrize("V,tied", [(8000, True), (8000, False), (16000, False)])
@pytest.mark.parametrize("r", RATIOS)
@pytest.mark.parametrize("g", GLUS)
def test_other_points_are_inside_or_refused_clearly(V, tied, r, g):
    try:
        p = plan(T, r, g, V, tied)
    except ValueError as e:
        msg = str(e)
        assert "Closest plan: d_model=" in msg and "out of tolerance" in msg
        return
    assert_inside(p, r, g)
    assert p.head == (0 if tied else V * p.d_model)


def test_untied_head_is_counted_separately_and_built():
    p = plan(T, 0.25, 2.66, 16000, False)
    assert p.head == 16000 * p.d_model
    assert p.embedding_ratio == pytest.approx(p.embedding / p.total)
    model = GPT.from_plan(p)
    assert model.head is not None
    assert model.param_counts()["head"] == p.head


def test_count_params_matches_formula():
    c = count_params(d_model=16, n_layers=2, ffn_hidden=40, vocab_size=100, tied_lm_head=True)
    assert c == {
        "embedding": 1600,
        "attention": 2 * 4 * 256,
        "ffn": 2 * 3 * 16 * 40,
        "norm": 2 * 2 * 16 + 16,
        "head": 0,
        "total": 1600 + 2048 + 3840 + 80,
    }


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("embedding_ratio", dict(embedding_ratio=1.5)),
        ("glu_expansion", dict(glu_expansion=0.1)),
        ("vocab_size", dict(vocab_size=70_000)),
        ("total_params", dict(total_params=10)),
    ],
)
def test_bad_request_names_the_field(field, kwargs):
    args = dict(total_params=T, embedding_ratio=0.35, glu_expansion=2.66, vocab_size=16000)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        plan(**args)


def test_embedding_larger_than_budget_is_refused():
    with pytest.raises(ValueError, match="lower embedding_ratio"):
        plan(100_000, 0.9, 2.66, 16000, False)


@pytest.mark.parametrize(
    "text,value",
    [("10M", 10_000_000), ("16k", 16_000), ("2.5M", 2_500_000), ("1_000", 1000), (42, 42)],
)
def test_parse_count(text, value):
    assert parse_count(text) == value


def test_parse_count_rejects_garbage():
    with pytest.raises(ValueError, match="10M"):
        parse_count("ten million")


def test_plan_cli_json_has_the_documented_keys():
    res = CliRunner().invoke(
        app,
        [
            "plan",
            "--total-params",
            "10M",
            "--embedding-ratio",
            "0.35",
            "--glu-expansion",
            "2.66",
            "--vocab-size",
            "16000",
            "--tied",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in (
        "total",
        "embedding",
        "attention",
        "ffn",
        "norm",
        "head",
        "d_model",
        "n_layers",
        "n_heads",
        "ffn_hidden",
        "embedding_ratio",
        "glu_expansion",
        "vocab_size",
        "tied_lm_head",
    ):
        assert key in d
    assert d["requested"]["embedding_ratio"] == 0.35
    assert d["embedding_ratio"] == pytest.approx(d["embedding"] / d["total"])
    assert d["tied_lm_head"] is True and d["head"] == 0


def test_plan_cli_untied_and_refusal_exit_code():
    ok = CliRunner().invoke(app, ["plan", "--untied", "--embedding-ratio", "0.25", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["tied_lm_head"] is False
    bad = CliRunner().invoke(
        app, ["plan", "--untied", "--embedding-ratio", "0.45", "--glu-expansion", "2.0"]
    )
    assert bad.exit_code == 2
    assert "Closest plan" in bad.output


def test_plan_table_prints_components():
    res = CliRunner().invoke(app, ["plan"])
    assert res.exit_code == 0
    for word in ("embedding", "attention", "ffn", "norm", "head", "total"):
        assert word in res.stdout


def test_the_grid_in_the_docs_is_the_planners_own():
    """docs/planner.md shows `pax plan-grid`'s output, byte for byte."""
    import re

    from tests.conftest import ROOT
    from trainer.params import grid_table

    doc = (ROOT / "docs" / "planner.md").read_text()
    shown = re.search(r"<!-- plan-grid:[^\n]*-->\n(.*?)<!-- /plan-grid -->", doc, re.S)
    assert shown, "docs/planner.md lost its plan-grid markers"
    assert shown.group(1) == grid_table(10_000_000), "regenerate it: pax plan-grid"
