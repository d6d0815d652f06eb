"""`pax`: the command line, and the composition root that wires the floors together. Each
command group lives in pax/commands/<group>.py and registers itself here."""

from __future__ import annotations

import sys

import typer

from pax.commands import (
    cloud,
    data,
    demo,
    plan,
    release,
    service,
    sky,
    sweep,
    train,
    worker,
)

app = typer.Typer(
    help="pax: parameter-allocation experiments for small language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for group in (data, plan, train, service, sweep, worker, sky, cloud, demo, release):
    group.register(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
