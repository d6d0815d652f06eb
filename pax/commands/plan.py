"""`pax plan` and `pax plan-grid`: the planner, from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from pax.console import fail


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
        from rich.console import Console

        print_param_table(p, Console())


def plan_grid(
    total_params: Annotated[str, typer.Option("--total-params", "--total_params")] = "10M",
) -> None:
    """Markdown table of the study's grid (docs/planner.md holds its output, checked by a test)."""
    from trainer.params import grid_table, parse_count

    print(grid_table(parse_count(total_params)), end="")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_cmd)
    app.command("plan-grid")(plan_grid)
