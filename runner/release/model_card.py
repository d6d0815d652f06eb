"""MODEL_CARD_<cell>.md: one per finalist cell, from the ledger's results of its seeds."""

from __future__ import annotations

import statistics

from runner.release.markdown import budget
from runner.release.md_format import BLIMP_LICENCE, DATA_LICENCE, SAMPLE_NOTE, ci, num, table, text

PARAM_PARTS = ("embedding", "attention", "ffn", "norm", "head", "total")


def best_run(runs: list[dict]) -> dict:
    """The seed whose weights represent the cell (lowest dev PPL; ties: lowest run id)."""
    return min(runs, key=lambda r: (r["dev_word_ppl"], r["run_id"]))


def smallbench_rows(runs: list[dict]) -> list[list]:
    tasks: dict[str, list[dict]] = {}
    for r in runs:
        for name, t in ((r["result"].get("smallbench") or {}).get("tasks") or {}).items():
            tasks.setdefault(name, []).append(t)
    rows = []
    for name in sorted(tasks):
        accs = [t["acc"] for t in tasks[name]]
        spread = num(statistics.stdev(accs), 3) if len(accs) > 1 else "-"
        rows.append([name, tasks[name][0].get("field", "-"), num(statistics.fmean(accs), 3),
                     spread, tasks[name][0].get("n", "-")])  # fmt: skip
    return rows


def model_card(f: dict, stats: dict, runs: list[dict], hf_dir: str | None) -> str:
    best = best_run(runs)
    res = best["result"]
    cfg = res.get("config") or {}
    prov = res.get("provenance") or {}
    params = res.get("params") or {}
    optim = cfg.get("optim") or {}
    data = cfg.get("data") or {}
    cell = stats["cell"]
    lines = [f"# Model card: `{cell}` (sweep {f['sweep']['id']}, {text(f['sweep']['name'])})"
             + (" [SAMPLE]" if f["sample"] else ""), ""]  # fmt: skip
    if f["sample"]:
        lines += [SAMPLE_NOTE, ""]
    lines += [
        f"A Llama-style decoder of {budget(f)} planned by pax for embedding share "
        f"{num(stats['embedding_ratio'])} and SwiGLU expansion {num(stats['glu_expansion'])}, "
        f"trained on {prov.get('dataset', 'WikiText-2')} with {stats['seeds']} seeds. The "
        f"weights described here are seed {best['seed']}'s (run {best['run_id']}, the lowest "
        "dev PPL of the seeds).",
        "",
        "## Architecture",
        "",
    ]
    lines += table(
        ["d_model", "layers", "heads", "head_dim", "FFN hidden", "vocab", "LM head"],
        [[best["d_model"], best["n_layers"], best["n_heads"], best["head_dim"],
          best["ffn_hidden"], best["vocab_size"],
          "tied to the embedding" if best["tied_lm_head"] else "untied"]],
    )  # fmt: skip
    lines += ["Pre-norm RMSNorm (eps 1e-5), rotate-half RoPE (theta 10,000), causal attention, "
              "SwiGLU, no biases.", "", "### Parameters (exact)", ""]  # fmt: skip
    lines += table(list(PARAM_PARTS), [[num(params.get(k)) for k in PARAM_PARTS]])
    lines += [
        f"Achieved embedding share {num(best['achieved_embedding_ratio'], 4)}, SwiGLU "
        f"expansion {num(best['achieved_glu_expansion'], 4)} (requested "
        f"{num(stats['embedding_ratio'])} and {num(stats['glu_expansion'])}).",
        "",
        "## Data and tokenizer",
        "",
        f"- Dataset: {prov.get('dataset', 'WikiText-2')}",
        f"- Data manifest SHA-256: `{prov.get('data_manifest_sha256', '-')}`",
        f"- Tokenizer: SentencePiece BPE, V={best['vocab_size']}, byte fallback; "
        f"model SHA-256 `{prov.get('tokenizer_sha256', '-')}`",
        "",
        "## Training budget and schedule",
        "",
    ]
    lines += table(
        ["tokens", "batch x seq", "lr", "warmup tokens", "schedule", "min lr ratio",
         "weight decay", "grad clip", "dtype", "seeds"],
        [[num(cfg.get("max_tokens")), f"{data.get('batch_size')} x {data.get('seq_len')}",
          optim.get("lr"), num(optim.get("warmup_tokens")), optim.get("schedule"),
          optim.get("min_lr_ratio"), optim.get("weight_decay"), optim.get("grad_clip"),
          prov.get("dtype"), ", ".join(str(r["seed"]) for r in runs)]],
    )  # fmt: skip
    lines += ["## Metrics", "", "Word-level PPL, mean ± half-width [95% t-interval over seeds].",
              ""]  # fmt: skip
    lines += table(
        ["split", "word PPL"],
        [["dev", ci(stats["dev_ppl_mean"], stats["dev_ppl_ci95_low"], stats["dev_ppl_ci95_high"])],
         ["test", ci(stats["test_ppl_mean"], stats["test_ppl_ci95_low"],
                     stats["test_ppl_ci95_high"])]],
    )  # fmt: skip
    sb = smallbench_rows(runs)
    # the study's 9 paradigms, or all of BLiMP's with `eval.smallbench_tasks: all`
    suite = ((res.get("smallbench") or {}).get("suite") or {}).get("name") or "SmallBench"
    lines += [f"### {suite} (BLiMP minimal pairs, held out)", ""]
    lines += (
        table(["task", "field", "accuracy (mean over seeds)", "seed std", "pairs"], sb)
        if sb
        else ["Not evaluated.", ""]
    )
    lat = res.get("latency") or {}
    mem = res.get("inference_memory") or {}
    lines += ["### Latency and memory", ""]
    lines += table(
        ["device", "prefill 128 ms", "prefill 512 ms", "decode ms/token (ctx 128)",
         "inference memory", "contended"],
        [[f"{prov.get('device', '-')} ({prov.get('device_name', '-')})",
          num((lat.get("seq128") or {}).get("median_ms")),
          num((lat.get("seq512") or {}).get("median_ms")),
          num(((res.get("decode_latency") or {}).get("ctx128") or {}).get("ms_per_token")),
          f"{num(mem.get('bytes'))} bytes ({mem.get('kind', '-')})",
          num(bool(res.get("latency_contended")))]],
    )  # fmt: skip
    lines += [
        "## Intended use and limitations",
        "",
        "A research artefact of a parameter-allocation study: it answers how a fixed budget is "
        "best split, at one small size, on one small corpus. It is not a general-purpose "
        "language model: it has seen only Wikipedia text, produces no reliable facts, and was "
        "not evaluated for bias or safety.",
        "",
        "## Licences",
        "",
        f"- {DATA_LICENCE}; the weights derive from it.",
        f"- {BLIMP_LICENCE} (evaluation only).",
        "",
        "## How to load it",
        "",
    ]
    where = hf_dir or "DIR"
    lines += [
        f"`pax export --run {best['run_id']} --format hf {where}` writes a `LlamaForCausalLM` "
        "folder (config.json, model.safetensors, the tokenizer)"
        + (f"; this release has it in `{hf_dir}`" if hf_dir else "")
        + ":",
        "",
        "```python",
        "from transformers import AutoTokenizer, LlamaForCausalLM",
        f'model = LlamaForCausalLM.from_pretrained("{where}")',
        f'tok = AutoTokenizer.from_pretrained("{where}")  # needs sentencepiece + protobuf',
        "```",
        "",
        "pax encodes text one line at a time and ends each line with `<nl>` (id 4); do the "
        "same, with whitespace collapsed as SentencePiece does, for ids equal to pax's. Around "
        "WikiText's literal `<unk>` (id 5, a user-defined piece) transformers' tokenizer may "
        "split differently; the model's logits for the same ids match pax's within 1e-4.",
    ]
    return "\n".join(lines).rstrip() + "\n"


def model_cards(f: dict, hf_dirs: dict[str, str] | None = None) -> dict[str, str]:
    """{file name: text} for every finalist cell with a finished seed."""
    by_cell: dict[str, list[dict]] = {}
    for r in f["finalist_runs"]:
        by_cell.setdefault(r["cell"], []).append(r)
    return {
        f"MODEL_CARD_{s['cell']}.md": model_card(
            f, s, by_cell[s["cell"]], (hf_dirs or {}).get(s["cell"])
        )
        for s in f["finalists"]
        if by_cell.get(s["cell"])
    }
