import pytest

from tests.conftest import ROOT, write_config
from trainer.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    load_config,
    raw_config,
    validate,
)


def test_defaults_are_the_study_baseline():
    cfg = TrainConfig()
    m = cfg.model
    assert (m.total_params, m.embedding_ratio, m.glu_expansion, m.vocab_size, m.tied_lm_head) == (
        10_000_000,
        0.35,
        2.66,
        16000,
        True,
    )
    assert cfg.plan().d_model == 216


@pytest.mark.parametrize(
    "raw,field",
    [
        ({"model": {"embedding_ratio": 1.2}}, "model.embedding_ratio"),
        ({"optim": {"lr": -1}}, "optim.lr"),
        ({"data": {"seq_len": 2}}, "data.seq_len"),
        ({"runtime": {"dtype": "fp8"}}, "runtime.dtype"),
        ({"optim": {"learning_rate": 1e-3}}, "optim.learning_rate"),
        ({"max_tokens": 10}, "max_tokens"),
    ],
)
def test_validation_names_the_field(raw, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate(raw)


def test_range_is_in_the_message():
    with pytest.raises(ConfigError, match="less than or equal to 0.95"):
        validate({"model": {"embedding_ratio": 1.2}})


def test_budget_refusal_carries_the_planner_message():
    with pytest.raises(ConfigError, match="model: no plan within tolerances.*Closest plan"):
        validate({"model": {"tied_lm_head": False, "embedding_ratio": 0.45, "glu_expansion": 2.0}})


def test_counts_accept_suffixes():
    cfg = validate({"max_tokens": "5M", "model": {"total_params": "10M"}})
    assert cfg.max_tokens == 5_000_000 and cfg.model.total_params == 10_000_000


def test_yaml_base_plus_experiment_plus_overrides(tmp_path):
    path = write_config(
        tmp_path / "c.yaml",
        {"max_tokens": "1M", "optim": {"lr": 1e-3}},
        {"a": {"optim": {"lr": 2e-3}}, "b": {"model": {"embedding_ratio": 0.25}}},
    )
    a = load_config(path, "a", ["optim.warmup_tokens=5", "model.tied_lm_head=true"])
    assert a.name == "a" and a.optim.lr == 2e-3 and a.optim.warmup_tokens == 5
    assert a.max_tokens == 1_000_000
    b = load_config(path, "b")
    assert b.model.embedding_ratio == 0.25 and b.optim.lr == 1e-3
    assert a.spec_hash() != b.spec_hash()


def test_unknown_experiment_lists_the_choices(tmp_path):
    path = write_config(tmp_path / "c.yaml", {}, {"emb25": {}, "emb35": {}})
    with pytest.raises(ConfigError, match="emb25, emb35"):
        raw_config(path, "emb99")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        apply_overrides({}, ["optim.lr"])


def test_spec_hash_ignores_the_name():
    assert validate({"name": "x"}).spec_hash() == validate({"name": "y"}).spec_hash()


@pytest.mark.parametrize(
    "name,exps",
    [
        ("embed_ratio.yaml", {"emb25": 0.25, "emb35": 0.35, "emb45": 0.45}),
        ("glu_expansion.yaml", {"glu2x": 2.0, "glu266x": 2.66, "glu3x": 3.0, "glu4x": 4.0}),
    ],
)
def test_study_configs_are_valid_and_feasible(name, exps):
    for exp, value in exps.items():
        cfg = load_config(ROOT / "configs" / name, exp)
        knob = cfg.model.embedding_ratio if "embed" in name else cfg.model.glu_expansion
        assert knob == value and cfg.max_tokens <= 5_000_000 and cfg.name == exp


def test_smoke_config_is_valid():
    cfg = load_config(ROOT / "configs" / "smoke.yaml", "smoke")
    assert cfg.max_tokens // cfg.eval.every_tokens >= 3
    assert cfg.total_steps // cfg.checkpoint.every_steps >= 3


@pytest.mark.parametrize("char", ["\u061c", "\u2028", "\u2029", "\u200b", "\ufeff", "\u206a",
                                  "\u202e", "\x1b", "\x85"])  # fmt: skip
def test_plan_names_refuse_hidden_characters(char):
    """Cc, Cf, Zl and Zp are refused wherever a name people choose enters (issue 25: a plan
    name took U+061C, U+2028, U+200B, U+FEFF and U+206A)."""
    from runner.study.plan_spec import parse_plan

    with pytest.raises(ConfigError, match=f"U\\+{ord(char):04X}"):
        parse_plan({"name": f"a{char}b"})


def test_plan_names_keep_ordinary_text():
    from runner.study.plan_spec import parse_plan

    plan, _ = parse_plan({"name": "étude 10M · emb×GLU (v2)"})
    assert plan.name == "étude 10M · emb×GLU (v2)"
