"""Where a SmallBench score lies against the untrained band (mean +/- 2 sd of untrained inits of
the same shape): one rule for a run's metrics and for the report's finalists. No torch here, so
the service reads it without loading the trainer's stack."""

from __future__ import annotations

BAND_SDS = 2  # the band is the untrained mean +/- 2 sd


def against_band(score: float | None, mean: float | None, sd: float | None) -> str | None:
    """ "above", "inside" or "below" the band; None without a score or a band."""
    if score is None or mean is None:
        return None
    lo, hi = mean - BAND_SDS * (sd or 0.0), mean + BAND_SDS * (sd or 0.0)
    return "above" if score > hi else "below" if score < lo else "inside"
