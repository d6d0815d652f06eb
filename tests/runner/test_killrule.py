"""The kill rule, table-driven: (run curve, baseline curve, spec) -> verdict."""

import pytest

from runner.study.killrule import KillRuleSpec, evaluate

M = 1_000_000
BASE = [(0, 900.0), (1 * M, 300.0), (2 * M, 200.0), (3 * M, 150.0), (4 * M, 120.0)]

CASES = [
    # name, run curve, spec kwargs, kill?, reason fragment
    ("no points yet", [], {}, False, "no curve"),
    ("equal to baseline", [(t, v) for t, v in BASE], {}, False, "not trailing"),
    ("better than baseline", [(t, v - 5) for t, v in BASE], {}, False, "not trailing"),
    ("worse but only 0.4 PPL", [(t, v + 0.4) for t, v in BASE], {}, False, "not trailing"),
    ("worse by 0.5 for exactly the window", [(1 * M, 300.5), (2 * M, 200.5)], {}, True, "trailed"),
    (
        "worse by 0.5 for less than the window",
        [(1 * M, 300.5), (1.5 * M, 260.0)],
        {},
        False,
        "trailing for 500,000",
    ),
    (
        "trailing stretch restarts after a recovery",
        [(1 * M, 301.0), (2 * M, 199.0), (3 * M, 151.0), (3.5 * M, 140.0)],
        {},
        False,
        "trailing for 500,000",
    ),
    (
        "interpolated baseline between points",
        [(1.5 * M, 251.0), (2.5 * M, 176.0)],
        {},
        True,
        "trailed",
    ),
    (
        "no decision past the baseline's last point",
        [(5 * M, 500.0), (6 * M, 500.0)],
        {},
        False,
        "has not reached",
    ),
    (
        "relative margin met",
        [(1 * M, 330.0), (2 * M, 220.0)],
        {"relative": True, "margin": 0.1},
        True,
        "10%",
    ),
    (
        "relative margin missed",
        [(1 * M, 320.0), (2 * M, 210.0)],
        {"relative": True, "margin": 0.1},
        False,
        "not trailing",
    ),
    (
        "zero window kills at the first trailing point",
        [(1 * M, 301.0)],
        {"window_tokens": 0},
        True,
        "trailed",
    ),
    ("unsorted input is fine", [(2 * M, 201.0), (1 * M, 301.0)], {}, True, "trailed"),
]


@pytest.mark.parametrize("name,run,kw,kill,fragment", CASES, ids=[c[0] for c in CASES])
def test_kill_rule(name, run, kw, kill, fragment):
    v = evaluate(run, BASE, KillRuleSpec(**kw))
    assert v.kill is kill, v.reason
    assert fragment in v.reason


def test_evidence_holds_both_curves_over_the_window():
    v = evaluate([(1 * M, 301.0), (2 * M, 201.0), (3 * M, 151.0)], BASE, KillRuleSpec())
    assert v.kill
    ev = v.evidence
    assert ev["trailing_from_tokens"] == 1 * M and ev["trailing_tokens"] == 2 * M
    assert [p[0] for p in ev["run"]] == [1 * M, 2 * M, 3 * M]
    assert [p[1] for p in ev["baseline"]] == [300.0, 200.0, 150.0]


def test_spec_accepts_counts_and_refuses_nonsense():
    assert KillRuleSpec(window_tokens="1M").window_tokens == 1_000_000
    with pytest.raises(ValueError, match="margin"):
        KillRuleSpec(margin=-1)
