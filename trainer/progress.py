"""Training progress for people: a rich bar on a terminal, plain periodic lines in logs."""

from __future__ import annotations

import sys


class Progress:
    """A rich progress bar on a terminal; plain periodic lines otherwise (logs, CI)."""

    def __init__(self, total_tokens: int, done_tokens: int, enabled: bool = True):
        self.total = total_tokens
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RP

            self.bar = RP(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task(
                "train", total=total_tokens, completed=done_tokens, info=""
            )

    def update(self, tokens: int, loss: float, tps: float) -> None:
        eta = (self.total - tokens) / tps if tps > 0 else float("inf")
        if self.bar is not None:
            self.bar.update(self.task, completed=tokens, info=f"loss {loss:.3f}  {tps:,.0f} tok/s")
        else:
            print(
                f"tokens {tokens:,}/{self.total:,} loss {loss:.4f} {tps:,.0f} tok/s "
                f"eta {eta:,.0f}s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
