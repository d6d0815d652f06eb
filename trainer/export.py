"""A run's final model, and its export as a Hugging Face `LlamaForCausalLM` folder.

The planner's architecture is Llama's exactly (RMSNorm, rotate-half RoPE, SwiGLU, no biases,
optionally tied head), so export is a renaming of tensors: no numerics change. `qkv.weight`
stacks [q; k; v] with rows ordered (head, head_dim), the layout of HF's q/k/v_proj; `gate_up`
stacks [gate; up]. The tokenizer goes as its SentencePiece model with a `LlamaTokenizer`
config; transformers converts it on load.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from trainer import checkpoint as ckpt
from trainer.config import TrainConfig
from trainer.model import GPT

HF_WEIGHTS = "model.safetensors"


def load_final_model(run_dir: Path, lengths: tuple[int, ...] = ()) -> tuple[GPT, TrainConfig, dict]:
    """(model on CPU, config, meta) of the model a run's own final evaluation scored: the best
    dev checkpoint when `eval.final_model` is "best" and one exists (never with the wsd
    schedule, whose end is its annealed model), else the latest one. Its
    RoPE table covers the run's sequence length and `lengths`."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} is missing: is {run_dir} a run directory?")
    cfg = TrainConfig.model_validate_json(cfg_path.read_text())
    found = ckpt.latest(run_dir / "checkpoints")
    if found is None:
        raise FileNotFoundError(f"{run_dir}/checkpoints holds no complete checkpoint")
    saved, meta = found
    model = GPT.from_plan(cfg.plan(), max_seq_len=max([cfg.data.seq_len, *lengths]))
    model.load_state_dict(saved["model"])
    best = None if cfg.scores_the_end else ckpt.load_best(run_dir / "checkpoints")
    if best is not None:
        model.load_state_dict(best[0])
        meta = {**meta, "step": best[1]["step"], "tokens": best[1]["tokens"], "kind": "best"}
    else:
        meta = {**meta, "kind": "latest"}
    return model, cfg, meta


def hf_config(model: GPT) -> dict:
    c = model.cfg
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "intermediate_size": c.ffn_hidden,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_heads,
        "head_dim": c.d_model // c.n_heads,
        "hidden_act": "silu",
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": c.tied_lm_head,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 3,
        "torch_dtype": "float32",
    }


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """pax's tensors under LlamaForCausalLM's names (fp32, contiguous, no shared storage)."""
    c = model.cfg
    sd = {"model.embed_tokens.weight": model.embed.weight, "model.norm.weight": model.norm.weight}
    for i, b in enumerate(model.blocks):
        p = f"model.layers.{i}."
        q, k, v = b.attn.qkv.weight.chunk(3, dim=0)
        gate, up = b.ffn.gate_up.weight.split(c.ffn_hidden, dim=0)
        sd |= {
            p + "input_layernorm.weight": b.attn_norm.weight,
            p + "self_attn.q_proj.weight": q,
            p + "self_attn.k_proj.weight": k,
            p + "self_attn.v_proj.weight": v,
            p + "self_attn.o_proj.weight": b.attn.proj.weight,
            p + "post_attention_layernorm.weight": b.ffn_norm.weight,
            p + "mlp.gate_proj.weight": gate,
            p + "mlp.up_proj.weight": up,
            p + "mlp.down_proj.weight": b.ffn.down.weight,
        }
    if model.head is not None:  # tied: HF rebuilds lm_head from embed_tokens
        sd["lm_head.weight"] = model.head.weight
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sd.items()}


def tokenizer_files(tok_dir: Path, out: Path) -> list[str]:
    """The SentencePiece model, wrapped for transformers' LlamaTokenizer: ids and special
    pieces as pax assigned them, no BOS/EOS added (pax trains without them)."""
    from trainer.prep.tokenizer import NL_PIECE, SP_UNK_PIECE

    shutil.copyfile(Path(tok_dir) / "tokenizer.model", out / "tokenizer.model")
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": True,
        "legacy": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": SP_UNK_PIECE,
        "pad_token": "<pad>",
        "additional_special_tokens": [NL_PIECE],
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return ["tokenizer.model", "tokenizer_config.json"]


def export_hf(run_dir: Path, out: Path) -> dict:
    """Write `out/` as a Hugging Face model folder: config.json, model.safetensors, tokenizer.
    Returns what was written, with the model's provenance."""
    from safetensors.torch import save_file

    model, cfg, meta = load_final_model(run_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(hf_config(model), indent=2, sort_keys=True) + "\n")
    provenance = {
        "format": "pax",
        "run": cfg.name,
        "step": str(meta["step"]),
        "tokens": str(meta["tokens"]),
        "weights": meta["kind"],
    }
    save_file(hf_state_dict(model), out / HF_WEIGHTS, metadata=provenance)
    files = ["config.json", HF_WEIGHTS, *tokenizer_files(cfg.tokenized_path(), out)]
    return {"dir": str(out), "files": files, **provenance}
