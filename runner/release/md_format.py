"""How the release's Markdown writes values: escaped user text, numbers, intervals, tables,
and the licence and sample notes every document carries."""

from __future__ import annotations

import math
import re

DATA_LICENCE = "WikiText-2: CC BY-SA 3.0 (Merity et al., 2016)"
BLIMP_LICENCE = "BLiMP: CC BY 4.0 (Warstadt et al., 2020)"
SAMPLE_NOTE = (
    "> **SAMPLE data.** These runs trained on a stand-in corpus (the official train split was "
    "not available; see the data manifest). The numbers check the pipeline; they are not "
    "WikiText-2 results."
)


# What Markdown gives meaning to: user text (a sweep's name, a reason) is escaped so that it can
# never form an image, a link, a heading or a table cell; it reads as typed.
MARKUP = re.compile(r"([\\`*_\[\]()<>#!|~&])")


def text(s) -> str:
    """User text for Markdown: one line, every markup character escaped."""
    return MARKUP.sub(r"\\\1", " ".join(str(s).split()))


def num(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def ci(mean, low, high, digits: int = 1) -> str:
    if low is None or not math.isfinite(low):
        return f"{num(mean, digits)} (one seed: no interval)"
    half = num((high - low) / 2, digits)
    return f"{num(mean, digits)} ± {half} [{num(low, digits)}, {num(high, digits)}]"


def table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return [*out, ""]
