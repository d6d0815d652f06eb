"""Typed training config: one pydantic model per concern, every field described and bounded.

A YAML file holds `base:` plus named `experiments:`; `--exp NAME` deep-merges one experiment over
the base, and `--set a.b=value` overrides on top. Validation errors name the dotted field and the
allowed range, so a bad spec is refused before any compute is spent.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from trainer.params import Plan, parse_count, plan
from trainer.safe_yaml import YamlRefused
from trainer.safe_yaml import load as load_yaml


def _count(v: Any) -> Any:
    return parse_count(v) if isinstance(v, str) else v


# A count of parameters or tokens: an int, or text such as "10M", "250k", "1.5M".
Count = Annotated[int, BeforeValidator(_count)]

# A name that ends up in paths (run directories, logs): letters, digits, '_', '.', '-'.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


def _name(v: str) -> str:
    if not re.fullmatch(NAME_PATTERN, v) or ".." in v:
        raise ValueError(
            f"{v[:40]!r} is not a usable name: use 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit, without '..' (it becomes part of file paths)"
        )
    return v


Name = Annotated[str, Field(json_schema_extra={"pattern": NAME_PATTERN}), AfterValidator(_name)]

# A label people read (a plan's name): any printable text, but none of the Unicode categories
# that hide, reorder or break what a terminal, a page or a file name shows: controls (Cc),
# format characters (Cf: bidi overrides, zero-width spaces, U+FEFF, U+061C), line and
# paragraph separators (Zl, Zp). The one name rule, wherever a name people choose enters.
UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}


def _label(v: str) -> str:
    bad = next((c for c in v if unicodedata.category(c) in UNSAFE_CATEGORIES), None)
    if bad is not None:
        raise ValueError(
            f"must not contain U+{ord(bad):04X} ({unicodedata.category(bad)}: control, format or "
            "separator characters hide or reorder what is shown)"
        )
    return v


Label = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_label)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(Section):
    total_params: Count = Field(
        10_000_000, ge=10_000, le=2_000_000_000, description="Parameter budget for the whole model."
    )
    embedding_ratio: float = Field(
        0.35, ge=0.01, le=0.95, description="Share of the budget in the input embedding table."
    )
    glu_expansion: float = Field(2.66, ge=0.5, le=16, description="SwiGLU inner width / d_model.")
    vocab_size: int = Field(16_000, ge=64, le=65_535, description="Tokenizer vocabulary size.")
    tied_lm_head: bool = Field(True, description="Share the embedding tensor with the LM head.")
    dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Dropout on the embeddings, the attention weights and each residual branch "
        "(training only; 0 = off, the study's default).",
    )


class DataSpec(Section):
    tokenized_dir: str = Field(
        "data/lm_tokenized", description="Root written by `pax tokenize`; sp<V>/ is used."
    )
    seq_len: int = Field(256, ge=8, le=4096, description="Training context length in tokens.")
    batch_size: int = Field(16, ge=1, le=4096, description="Sequences per optimizer step.")


class OptimSpec(Section):
    lr: float = Field(3e-3, gt=0, le=1.0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine floor as a fraction of lr.")
    warmup_tokens: Count = Field(
        200_000, ge=0, le=10**12, description="Linear warmup length in tokens."
    )
    weight_decay: float = Field(
        0.1,
        ge=0,
        le=1,
        description="AdamW decoupled weight decay "
        "(every matrix, the embedding included as in GPT-2/nanoGPT; norm gains are not "
        "decayed).",
    )
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2.")
    grad_clip: float = Field(1.0, ge=0, description="Global grad-norm clip; 0 disables.")
    schedule: Literal["cosine", "wsd"] = Field(
        "cosine",
        description="cosine over the budget, or wsd (warmup-stable-decay): the peak LR, then a "
        "linear decay over the last decay_fraction; an early stop gets a short decay first.",
    )
    decay_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="wsd: the share of the budget (or, at an early stop, of the tokens seen) "
        "spent decaying.",
    )


class EvalSpec(Section):
    every_tokens: Count = Field(
        1_000_000, ge=0, le=10**12, description="Dev evaluation interval; 0 = end only."
    )
    max_tokens: Count = Field(
        0,
        ge=0,
        description="Cap on dev tokens per interval eval (0 = the whole split); the final "
        "eval's is final_max_tokens.",
    )
    final_max_tokens: Count = Field(
        0,
        ge=0,
        description="Cap on tokens per split in the final dev and test evals (0 = the whole "
        "split, the study's setting). Capped numbers are flagged partial and are not strided; "
        "for demos on slow machines.",
    )
    smallbench_dir: str = Field(
        "data/smallbench",
        description="SmallBench suite folder; skipped (and reported as such) when missing.",
    )
    smallbench_tasks: Literal["smallbench", "all"] = Field(
        "smallbench",
        description="Which BLiMP paradigms to score: 'smallbench' (the study's 9) or 'all' (the "
        "archive's 67, from `scripts/download_smallbench.py --tasks all` into "
        "<smallbench_dir>/all; about 7.6x the scoring time, the untrained band's included).",
    )
    smallbench: bool = Field(True, description="Score SmallBench at the end.")
    profile: bool = Field(True, description="Measure batch-1 latency and memory at the end.")
    profile_repeats: int = Field(20, ge=3, le=1000, description="Timed runs per length.")
    early_stop_patience: int = Field(
        0,
        ge=0,
        le=1000,
        description="Stop after this many interval dev evals without a new "
        "best dev PPL (0 = off); the run still ends as succeeded, with the reason.",
    )
    test: bool = Field(True, description="Evaluate the test split at the end.")
    stride: int | None = Field(
        None,
        ge=0,
        description="Final evaluation: windows of seq_len every `stride` tokens, each scoring "
        "its last stride predictions (unset = seq_len/2; 0 = non-overlapping only). The "
        "non-overlapping numbers are kept beside them.",
    )
    final_model: Literal["best", "last"] = Field(
        "best",
        description="Which model the final evaluation (dev, test, SmallBench, profile) scores: "
        "the one of the best interval dev eval (kept as checkpoints/best.pt), or the last. "
        "With the wsd schedule it is always the last, the end of the decay (the best interval "
        "eval is reported beside it).",
    )


class CheckpointSpec(Section):
    every_steps: int = Field(500, ge=0, description="Checkpoint every N steps (0 = off).")
    every_minutes: float = Field(10.0, ge=0, description="...and/or every M minutes (0 = off).")
    keep_latest_k: int = Field(2, ge=1, le=100, description="Checkpoints kept on disk.")
    resume: bool = Field(True, description="Resume from the latest checkpoint when present.")


class RuntimeSpec(Section):
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda if present.")
    dtype: Literal["bf16", "fp16", "fp32"] = Field(
        "bf16",
        description="Autocast dtype; fp16 uses a GradScaler, bf16 falls back to fp16 where "
        "the device lacks it.",
    )
    compile: bool = Field(False, description="torch.compile the model.")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = Field(
        "default",
        description="torch.compile mode; reduce-overhead adds CUDA graphs (small batches).",
    )
    loss_chunk_rows: int = Field(
        0,
        ge=0,
        le=1 << 24,
        description="Rows per chunk of the LM-head loss (0 = from the device: 128 on CPU, "
        "full logits on CUDA when they fit a memory budget, else chunks of >= 8192 rows).",
    )
    seed: int = Field(1337, ge=0, le=2**31 - 1, description="Seed for init, data order, dropout.")
    deterministic: bool | None = Field(
        None,
        description="Deterministic algorithms. Unset: on for CPU (bit-exact, resumable bit for "
        "bit), off on CUDA (docs/gpu.md says what it costs there).",
    )
    threads: int = Field(0, ge=0, le=256, description="torch CPU threads (0 = torch's default).")


class LogSpec(Section):
    every_steps: int = Field(10, ge=1, description="Train-loss logging interval in steps.")
    tensorboard: bool = Field(False, description="Also write TensorBoard event files.")
    wandb: bool = Field(True, description="Use W&B when installed and WANDB_API_KEY is set.")
    wandb_project: str = Field("pax", description="W&B project name.")


class TrainConfig(Section):
    name: Name = Field("run", description="Experiment name (it names the run's directory).")
    max_tokens: Count = Field(5_000_000, ge=1, le=10**12, description="Token budget of the run.")
    max_passes: float | None = Field(
        None,
        gt=0,
        le=10_000,
        description="Budget in passes over the train split instead: max_tokens becomes passes x "
        "the split's tokens when the run starts (the service's forecasts still read max_tokens).",
    )
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    log: LogSpec = Field(default_factory=LogSpec)

    @model_validator(mode="after")
    def _fits(self) -> TrainConfig:
        if self.max_tokens < self.tokens_per_step:
            raise ValueError(
                f"max_tokens={self.max_tokens} is less than one step "
                f"(data.batch_size x data.seq_len = {self.tokens_per_step})"
            )
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.data.batch_size * self.data.seq_len

    @property
    def total_steps(self) -> int:
        return self.max_tokens // self.tokens_per_step

    @property
    def scores_the_end(self) -> bool:
        """Whether the run reports its last model: asked for (eval.final_model=last), or the
        wsd schedule, whose decay is what its end is for (a ranking run's best interval eval
        sat before the anneal, at 0.32x the peak LR, and cells that gain late lost by it)."""
        return self.eval.final_model == "last" or self.optim.schedule == "wsd"

    def plan(self) -> Plan:
        m = self.model
        return plan(
            m.total_params, m.embedding_ratio, m.glu_expansion, m.vocab_size, m.tied_lm_head
        )

    def spec_hash(self) -> str:
        """Identity of what is trained (the name is a label, not part of the identity)."""
        payload = self.model_dump(exclude={"name"})
        if not payload["eval"]["final_max_tokens"]:  # its default: older runs keep their hash
            del payload["eval"]["final_max_tokens"]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def tokenized_path(self) -> Path:
        return Path(self.data.tokenized_dir) / f"sp{self.model.vocab_size}"

    def missing_data(self) -> str | None:
        """What is missing for this config to train here, and the command that makes it (the
        trainer's refusal, and the service's 422 for a local launch: one text)."""
        manifest = self.tokenized_path() / "manifest.json"
        if manifest.is_file():
            return None
        return (  # commands of the `pax` an installed wheel has, not scripts of a checkout
            f"data.tokenized_dir: {manifest} is missing; run "
            f"`{tokenize_command(self.model.vocab_size, self.data.tokenized_dir)}` first "
            "(after `pax data wikitext --output data/wikitext-2`)"
        )


def tokenize_command(vocab_size, output: str = "data/lm_tokenized") -> str:
    """The command that makes a tokenizer's files, as every message names it."""
    return f"pax tokenize --input data/wikitext-2 --vocab-size {vocab_size} --output {output}"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field and the fix."""


def describe_errors(errors: list, root: str = "config") -> str:
    """Pydantic errors as one readable line, each naming its dotted field (the one formatter of
    validation errors: configs, plans, settings and API bodies)."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"] if p != "body") or root
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; docs/training.md lists the fields)"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def format_validation_error(e: ValidationError) -> str:
    return "invalid config: " + describe_errors(e.errors())


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`--set optim.lr=1e-3 model.tied_lm_head=false`: values parsed as YAML scalars."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: use dotted.key=value, e.g. --set optim.lr=1e-3")
        node = raw
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def _load_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        doc = load_yaml(path.read_text()) or {}
    except YamlRefused as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with `base:` and `experiments:`")
    return doc


def raw_config(path: Path | None, exp: str | None = None, overrides: list[str] = ()) -> dict:
    """The merged, not yet validated dict (what the runner stores as a spec)."""
    raw: dict = {}
    if path is not None:
        doc = _load_yaml(path)
        unknown = set(doc) - {"base", "experiments", "plan", "description"}
        if unknown:
            raise ConfigError(
                f"{path}: unknown top-level keys {sorted(unknown)}; expected "
                "`base:` and `experiments:`"
            )
        raw = copy.deepcopy(doc.get("base") or {})
        exps = doc.get("experiments") or {}
        if exp is not None:
            if exp not in exps:
                raise ConfigError(
                    f"--exp {exp!r} is not in {path}; choose one of "
                    f"{', '.join(sorted(exps)) or '(none defined)'}"
                )
            raw = deep_merge(raw, exps[exp] or {})
            # logs/<exp>/...: the experiment's key names the run unless it sets a name itself
            raw["name"] = (exps[exp] or {}).get("name", exp)
    elif exp is not None:
        raise ConfigError("--exp needs --config")
    return apply_overrides(raw, list(overrides))


def validate(raw: dict, *, check_plan: bool = True) -> TrainConfig:
    try:
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None
    if check_plan:
        try:
            cfg.plan()
        except ValueError as e:
            raise ConfigError(f"model: {e}") from None
    return cfg


def load_config(
    path: Path | None, exp: str | None = None, overrides: list[str] = ()
) -> TrainConfig:
    return validate(raw_config(path, exp, overrides))
