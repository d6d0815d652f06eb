"""Charts that survive real data: label placement, faded outliers outside the limits, log axes,
and the compare page's pure parts (smoothing, config diff, best per column)."""

import itertools
import re

from web import charts, compare, labels


def _boxes(svg: str) -> list[tuple]:
    out = []
    for m in re.finditer(
        r'<text x="([\d.]+)" y="([\d.]+)" text-anchor="(\w+)" class="point"[^>]*>([^<]*)<', svg
    ):
        x, y, anchor, text = float(m[1]), float(m[2]), m[3], m[4]
        out.append(labels.text_box(text, x, y, anchor))
    return out


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_of_a_dense_cluster_never_overlap():
    # twelve cells within one PPL unit: the smear the issue describes
    pts = [
        {"x": 10 + 0.01 * i, "y": 100 + 0.05 * i, "label": f"v16000-tied-emb{i:02d}"}
        for i in range(12)
    ]
    pts += [{"x": 1.0, "y": 50.0, "label": "far-a"}, {"x": 20.0, "y": 200.0, "label": "far-b"}]
    svg = charts.scatter("t", pts, xlabel="x", ylabel="y")
    boxes = _boxes(svg)
    assert len(boxes) >= 6  # the cluster's labels fan out, the farther ones on leader lines
    assert 'class="leader"' in svg
    for a, b in itertools.combinations(boxes, 2):
        assert not _overlap(a, b)
    # every label, placed or not, is in its point's tooltip
    assert svg.count("<title>v16000-tied-emb") == 12


def test_place_gives_up_instead_of_overlapping():
    area = (0, 0, 60, 30)
    placed = labels.place([(30, 15, "a-very-long-label")], area)
    assert placed == [None]


def _y_ticks(svg: str) -> list[str]:
    return re.findall(r'text-anchor="end" class="tick"[^>]*>([^<]+)<', svg)


def test_faded_outlier_is_left_out_of_the_limits_unless_show_all():
    pts = [{"x": 1.0 + i, "y": 90.0 + i, "label": f"c{i}"} for i in range(4)]
    pts.append({"x": 2.5, "y": 200_000.0, "label": "control-lr-tiny", "faded": True})
    svg = charts.scatter("t", pts, xlabel="x", ylabel="y", ylog=True)
    ticks = _y_ticks(svg)
    assert ticks and all(not t.endswith("k") for t in ticks), ticks  # limits about 90-93
    assert "1 faded point off the axes" in svg
    assert "control-lr-tiny</text>" not in svg
    every = charts.scatter("t", pts, xlabel="x", ylabel="y", ylog=True, show_all=True)
    assert any(t.endswith("k") for t in _y_ticks(every))
    assert 'class="faded"' in every and "off the axes" not in every


def test_log_axis_ticks_are_round_numbers():
    assert charts._log_ticks(50, 20_000) == [50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000]
    assert len(charts._log_ticks(95, 105)) >= 3  # under a decade: linear ticks


def test_ema_smoothing_is_debiased():
    assert compare.ema([4.0, 4.0, 4.0], 0.9) == [4.0, 4.0, 4.0]
    assert compare.ema([1.0, 2.0], 0) == [1.0, 2.0]
    s = compare.ema([0.0, 10.0, 10.0, 10.0], 0.5)
    assert s[0] == 0.0 and 0 < s[1] < s[2] < s[3] < 10


def _run(rid, **model):
    cfg = {"model": {"embedding_ratio": 0.35, "vocab_size": 512, **model}, "runtime": {"seed": 1}}
    return {"id": rid, "config": cfg, "plan": {"d_model": 64, "embedding_ratio": 0.3456}}


def test_config_diff_shows_only_fields_that_differ():
    runs = [_run(1), _run(2, embedding_ratio=0.45), _run(3, embedding_ratio=0.25)]
    runs[2]["plan"]["embedding_ratio"] = 0.2481234567
    rows = dict(compare.config_diff(runs))
    assert set(rows) == {"model.embedding_ratio", "plan.embedding_ratio"}
    assert rows["model.embedding_ratio"] == ["0.35", "0.45", "0.25"]
    assert rows["plan.embedding_ratio"][2] == "0.248123"  # 6 significant digits
    assert compare.config_diff([_run(1), _run(2)]) == []


def test_best_per_column_only_when_values_differ():
    runs = [
        {"result": {"dev": {"word_ppl": 120.0}, "smallbench": {"macro_acc": 0.6}}, "cost_usd": 0.0},
        {"result": {"dev": {"word_ppl": 100.0}, "smallbench": {"macro_acc": 0.5}}, "cost_usd": 0.0},
        {"result": None, "cost_usd": 0.0},
    ]
    cols, rows = compare.metrics_table(runs)
    dev, sb, cost = cols.index("dev word PPL"), cols.index("SmallBench"), cols.index("cost $")
    assert [r[dev]["best"] for r in rows] == [False, True, False]  # lower is better
    assert [r[sb]["best"] for r in rows] == [True, False, False]  # higher is better
    assert not any(r[cost]["best"] for r in rows)  # all equal: nothing to pick


def test_tick_labels_tell_close_ticks_apart():
    # a narrow PPL range printed "100, 100, 100" before
    assert charts.tick_labels([100.2, 100.4, 100.6]) == ["100.2", "100.4", "100.6"]
    assert charts.tick_labels([0.35, 0.375, 0.4]) == ["0.350", "0.375", "0.400"]
    assert charts.tick_labels([0, 20_000, 40_000]) == ["0k", "20k", "40k"]
    svg = charts.scatter(
        "t",
        [{"x": i, "y": 100.2 + 0.4 * i, "label": str(i)} for i in range(4)],
        xlabel="x",
        ylabel="y",
        ylog=True,
    )
    ticks = re.findall(r'text-anchor="end" class="tick"[^>]*>([^<]+)<', svg)
    assert len(set(ticks)) == len(ticks) >= 2, ticks
