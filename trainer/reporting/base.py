"""The reporter interface: every reporter has the same small interface, and the base class does
nothing, so the training loop never branches on which reporters are on."""

from __future__ import annotations


class Reporter:
    """No-op reporter: the interface."""

    def log(self, record: dict) -> None:
        """One event: {"event": "train" | "eval" | ..., "step": int, "tokens": int, ...}."""

    def result(self, metrics: dict) -> None:
        """The final metrics.json document."""

    def stop_requested(self) -> str | None:
        """A reason to stop (the runner's kill rule), or None to continue."""
        return None

    def close(self) -> None:
        pass


class Reporters(Reporter):
    def __init__(self, reporters: list[Reporter]):
        self.reporters = reporters

    def log(self, record: dict) -> None:
        for r in self.reporters:
            r.log(record)

    def result(self, metrics: dict) -> None:
        for r in self.reporters:
            r.result(metrics)

    def stop_requested(self) -> str | None:
        for r in self.reporters:
            reason = r.stop_requested()
            if reason:
                return reason
        return None

    def close(self) -> None:
        for r in self.reporters:
            r.close()
