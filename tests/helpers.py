"""Shared test helpers: polling with a deadline (never sleep-then-assert)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    pred: Callable[[], T], timeout: float = 60, what: str = "the condition", every: float = 0.1
) -> T:
    """Poll `pred` until it returns something truthy (which is returned) or `timeout` seconds
    pass (TimeoutError naming `what` and the last value seen). Robust on a loaded machine: the
    deadline is the only clock, and the predicate is checked once more at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not happen in {timeout:.0f}s (last: {value!r})")
        time.sleep(every)
