"""`pax`: the command line, and the composition root that wires the floors together."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    help="pax: parameter-allocation experiments for small language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Download the study's data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
err = Console(stderr=True)

EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


Mirror = Annotated[
    str | None,
    typer.Option(
        "--mirror",
        help="Folder or http(s) URL to take files from instead of the official source "
        "(default: $PAX_DATA_MIRROR).",
    ),
]


@data_app.command("wikitext")
def data_wikitext(
    output: Annotated[Path, typer.Option("--output", help="Where train/valid/test.txt go.")] = Path(
        "data/wikitext-2"
    ),
    mirror: Mirror = None,
    variant: Annotated[str, typer.Option(help="v1 (word-level, with <unk>) or raw.")] = "v1",
    revision: Annotated[str, typer.Option(help="Hugging Face hub revision.")] = "main",
    force: Annotated[bool, typer.Option(help="Rewrite even if the output is current.")] = False,
) -> None:
    """Fetch WikiText-2 (Hugging Face hub, or a mirror) and write it with a manifest."""
    from trainer.fetch import FetchError
    from trainer.wikitext import download_wikitext

    try:
        m = download_wikitext(
            output, mirror=mirror, variant=variant, revision=revision, force=force
        )
    except (FetchError, ValueError) as e:
        fail(str(e))
    for split, s in m["splits"].items():
        err.print(
            f"{split:>5}: {s['lines']:>6,} lines {s['words']:>9,} words "
            f"{s['word_level_tokens']:>9,} word-level tokens"
        )
    if m["sample"]:
        err.print(f"[bold yellow]{m['note']}[/]")
    print(json.dumps({"output": str(output), "sample": m["sample"], "layout": m["layout"]}))


@app.command("tokenize")
def tokenize(
    input: Annotated[
        Path, typer.Option("--input", help="Folder written by `pax data wikitext`.")
    ] = Path("data/wikitext-2"),
    vocab_size: Annotated[int, typer.Option("--vocab_size", "--vocab-size")] = 16000,
    output: Annotated[
        Path, typer.Option("--output", help="Root; files go to OUTPUT/sp<V>/.")
    ] = Path("data/lm_tokenized"),
    model_type: Annotated[str, typer.Option("--model_type", "--model-type")] = "bpe",
    reports: Annotated[Path, typer.Option(help="Where length_hist.png goes.")] = Path(
        "reports/data"
    ),
    force: Annotated[bool, typer.Option(help="Retrain even if the cache is current.")] = False,
) -> None:
    """Train a SentencePiece tokenizer and encode every split to uint16 token files."""
    from trainer.tokenizer import build_tokenizer, tokenized_dir

    try:
        m = build_tokenizer(
            input, vocab_size, output, model_type=model_type, reports_dir=reports, force=force
        )
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    for split, s in m["splits"].items():
        err.print(f"{split:>5}: {s['tokens']:>9,} tokens ({s['tokens_per_word']:.3f} per word)")
    if m["sample"]:
        err.print("[bold yellow]SAMPLE[/] data: these token files are not WikiText-2 train.")
    print(
        json.dumps(
            {
                "output": str(tokenized_dir(output, vocab_size)),
                "tokenizer_sha256": m["tokenizer_sha256"],
                "sample": m["sample"],
            }
        )
    )


@app.command("plan")
def plan_cmd(
    total_params: Annotated[
        str, typer.Option("--total-params", "--total_params", help="Budget, e.g. 10M.")
    ] = "10M",
    embedding_ratio: Annotated[
        float, typer.Option("--embedding-ratio", "--embedding_ratio")
    ] = 0.35,
    glu_expansion: Annotated[float, typer.Option("--glu-expansion", "--glu_expansion")] = 2.66,
    vocab_size: Annotated[int, typer.Option("--vocab-size", "--vocab_size")] = 16000,
    tied: Annotated[
        bool, typer.Option("--tied/--untied", help="Tie the LM head to the embedding.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Solve the architecture for a budget split and print its parameter table."""
    from trainer.params import parse_count, plan, print_param_table

    try:
        p = plan(parse_count(total_params), embedding_ratio, glu_expansion, vocab_size, tied)
    except ValueError as e:
        fail(str(e))
    if as_json:
        print(p.to_json())
    else:
        print_param_table(p, Console())


@app.command("plan-grid")
def plan_grid(
    total_params: Annotated[str, typer.Option("--total-params", "--total_params")] = "10M",
) -> None:
    """Markdown table of the study's grid (the README's architecture table)."""
    from trainer.params import parse_count, plan

    T = parse_count(total_params)
    print(
        "| V | head | emb. share | GLU | d_model | layers | heads | FFN width | total | "
        "achieved emb. | achieved GLU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for V, tied in ((16000, True), (16000, False), (8000, True), (8000, False)):
        for r in (0.25, 0.35, 0.45):
            for g in (2.0, 2.66, 3.0, 4.0):
                head = "tied" if tied else "untied"
                try:
                    p = plan(T, r, g, V, tied)
                except ValueError:
                    print(
                        f"| {V // 1000}k | {head} | {r} | {g} | refused (no plan within "
                        "tolerances) | | | | | | |"
                    )
                    continue
                print(
                    f"| {V // 1000}k | {head} | {r} | {g} | {p.d_model} | {p.n_layers} | "
                    f"{p.n_heads} | {p.ffn_hidden} | {p.total:,} | {p.embedding_ratio:.3f} | "
                    f"{p.glu_expansion:.3f} |"
                )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
