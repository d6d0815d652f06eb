"""Server-rendered SVG charts: no JavaScript library, no CDN, cheap to cache.

Each function returns a standalone SVG document as a string: colours and fonts are presentation
attributes, so the same string is inlined in a page (where app.css may restyle it, e.g. in dark
mode) and served as a download. Sizes are in CSS pixels; the SVG scales with its box, keeping
its aspect ratio. Log axes are the default for perplexities: one diverged run at PPL 200,000
would otherwise flatten every real cell into one pixel row. Faded points (killed runs,
controls) are drawn but do not set the axis limits unless asked to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from web import labels

PALETTE = ["#2f6fb0", "#c0504d", "#2e7d32", "#8e6bb8", "#b8741a", "#2a8a8a", "#6b6b6b"]
INK, MUTED, GRID, BOX = "#1d2433", "#5d6578", "#eef0f4", "#c9ced8"
FONT = 'font-family="system-ui, sans-serif"'


@dataclass(frozen=True)
class Canvas:
    w: int = 640
    h: int = 300
    pad_l: int = 64
    pad_r: int = 16
    pad_t: int = 28
    pad_b: int = 40

    @property
    def area(self) -> tuple[float, float, float, float]:
        return (self.pad_l, self.pad_t, self.w - self.pad_r, self.h - self.pad_b)


SMALL = Canvas()
WIDE = Canvas(w=960, h=440, pad_t=48)  # room for a legend row under the title


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    out, v = [], start
    while v <= hi + 1e-9 * step:
        out.append(v)
        v += step
    return out


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks per decade inside [lo, hi]; linear ticks when the range is under a decade
    and holds fewer than three of those."""
    out = [
        m * 10.0**k
        for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for m in (1, 2, 5)
        if lo <= m * 10.0**k <= hi
    ]
    return out if len(out) >= 3 else _ticks(lo, hi, 4)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.3g}"


def _frame(c: Canvas, title: str, xlabel: str, ylabel: str, note: str = "") -> list[str]:
    mid_y = (c.pad_t + c.h - c.pad_b) / 2
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {c.w} {c.h}" role="img" '
        f'aria-label="{escape(title)}" class="chart" {FONT}>',
        f"<title>{escape(title)}</title>",
        f'<rect width="{c.w}" height="{c.h}" fill="#fff" class="bg"/>',
        f'<text x="{c.pad_l}" y="18" class="title" font-size="13" font-weight="600" '
        f'fill="{INK}">{escape(title)}</text>',
        f'<text x="{c.w - c.pad_r}" y="{c.h - 6}" class="note" font-size="11" '
        f'fill="{MUTED}" text-anchor="end">{escape(note)}</text>',
        f'<text x="{c.pad_l}" y="{c.h - 6}" class="label" font-size="11" '
        f'fill="{MUTED}">{escape(xlabel)}</text>',
        f'<text x="14" y="{mid_y}" text-anchor="middle" class="label" font-size="11" '
        f'fill="{MUTED}" transform="rotate(-90 14 {mid_y})">{escape(ylabel)}</text>',
    ]


def tick_labels(ticks: list[float]) -> list[str]:
    """Labels for a set of ticks with just enough decimals that each reads as its own value
    (a narrow PPL range such as 100.2-101.4 must not print "100, 100, 100")."""
    if not ticks:
        return []
    top = max(abs(t) for t in ticks)
    unit, suffix = (1e6, "M") if top >= 1e6 else (1e3, "k") if top >= 1e4 else (1, "")
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False) if b > a]
    tol = 0.01 * (min(gaps) if gaps else abs(ticks[0]) or 1)
    for d in range(7):
        labels = [f"{t / unit:.{d}f}" for t in ticks]
        if len(set(labels)) == len(labels) and all(
            abs(float(s) * unit - t) <= tol for s, t in zip(labels, ticks, strict=True)
        ):
            return [s + suffix for s in labels]
    return [f"{t:.6g}" for t in ticks]


def _labels(ticks: list[float], log: bool) -> list[str]:
    """Log ticks are 1-2-5 numbers over decades: each reads best on its own (50, 200, 5k)."""
    own = [_fmt(t) for t in ticks]
    return own if log and len(set(own)) == len(own) else tick_labels(ticks)


def _tick(x, y, anchor, label: str) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="tick" font-size="11" '
        f'fill="{MUTED}">{label}</text>'
    )


def _axes(out, c: Canvas, sc: Scales):
    x0, y0, x1, y1 = c.area
    xt = _log_ticks(sc.xlo, sc.xhi) if sc.xlog else _ticks(sc.xlo, sc.xhi)
    for t, label in zip(xt, _labels(xt, sc.xlog), strict=True):
        x = sc.sx(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" class="grid" '
            f'stroke="{GRID}"/>' + _tick(x, y1 + 14, "middle", label)
        )
    yt = _log_ticks(sc.ylo, sc.yhi) if sc.ylog else _ticks(sc.ylo, sc.yhi)
    for t, label in zip(yt, _labels(yt, sc.ylog), strict=True):
        y = sc.sy(t)
        out.append(
            f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" class="grid" '
            f'stroke="{GRID}"/>' + _tick(x0 - 6, y + 4, "end", label)
        )
    out.append(
        f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" class="box" '
        f'fill="none" stroke="{BOX}"/>'
    )


@dataclass
class Scales:
    c: Canvas
    xlo: float
    xhi: float
    ylo: float
    yhi: float
    xlog: bool
    ylog: bool

    def _t(self, v, lo, hi, log):
        if log:
            v, lo, hi = math.log10(max(v, 1e-12)), math.log10(lo), math.log10(hi)
        return (v - lo) / (hi - lo)

    def sx(self, v: float) -> float:
        x0, _, x1, _ = self.c.area
        return x0 + self._t(v, self.xlo, self.xhi, self.xlog) * (x1 - x0)

    def sy(self, v: float) -> float:
        _, y0, _, y1 = self.c.area
        return y1 - self._t(v, self.ylo, self.yhi, self.ylog) * (y1 - y0)

    def holds(self, x: float, y: float) -> bool:
        return self.xlo <= x <= self.xhi and self.ylo <= y <= self.yhi


def _range(vs: list[float], log: bool, pad: float = 0.06) -> tuple[float, float]:
    lo, hi = min(vs), max(vs)
    if log:
        lo, hi = math.log10(max(lo, 1e-12)), math.log10(max(hi, 1e-12))
        p = (hi - lo) * pad or 0.05
        return 10 ** (lo - p), 10 ** (hi + p)
    if hi == lo:
        return lo - 1, hi + 1
    p = (hi - lo) * pad
    return lo - p, hi + p


def scales(c: Canvas, xs, ys, *, xlog=False, ylog=False, xpad=0.0) -> Scales:
    xlo, xhi = _range(xs, xlog, xpad)
    ylo, yhi = _range(ys, ylog)
    return Scales(c, xlo, xhi, ylo, yhi, xlog, ylog)


def empty(title: str, message: str, c: Canvas = SMALL, note: str = "") -> str:
    out = _frame(c, title, "", "", note)
    out.append(
        f'<text x="{c.w / 2}" y="{c.h / 2}" text-anchor="middle" class="empty" '
        f'font-size="13" fill="{MUTED}">{escape(message)}</text></svg>'
    )
    return "".join(out)


def _positive(s, ylog: bool):
    return [p for p in s if math.isfinite(p[0]) and math.isfinite(p[1]) and (p[1] > 0 or not ylog)]


def lines(
    title: str,
    series: list[tuple[str, list[tuple[float, float]]]],
    *,
    xlabel: str,
    ylabel: str,
    ylog: bool = False,
    note: str = "",
    canvas: Canvas = SMALL,
) -> str:
    """Line chart; series = [(label, [(x, y), ...]), ...]. A label starting with 'baseline'
    is dashed."""
    pts = [p for _, s in series for p in _positive(s, ylog)]
    if not pts:
        return empty(title, "no points yet", canvas, note)
    sc = scales(canvas, [p[0] for p in pts], [p[1] for p in pts], ylog=ylog)
    out = _frame(canvas, title, xlabel, ylabel, note)
    _axes(out, canvas, sc)
    for i, (label, s) in enumerate(series):
        s = _positive(s, ylog)
        color = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="5 3"' if label.startswith("baseline") else ""
        if s:
            d = " ".join(f"{sc.sx(x):.1f},{sc.sy(y):.1f}" for x, y in s)
            out.append(
                f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.8"'
                f' class="series" data-series="{escape(label)}"{dash}>'
                f"<title>{escape(label)}</title></polyline>"
            )
            if len(s) == 1:
                out.append(
                    f'<circle cx="{sc.sx(s[0][0]):.1f}" cy="{sc.sy(s[0][1]):.1f}" r="3" '
                    f'fill="{color}"/>'
                )
        lx = canvas.w - canvas.pad_r - 170
        ly = canvas.pad_t + 14 + 14 * i
        out.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 16}" y2="{ly - 4}" stroke="{color}" '
            f'stroke-width="2"{dash}/><text x="{lx + 20}" y="{ly}" class="legend" '
            f'font-size="11" fill="{MUTED}">{escape(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def scatter(
    title: str,
    points: list[dict],
    *,
    xlabel: str,
    ylabel: str,
    front: list[int] = (),
    ylog: bool = False,
    show_all: bool = False,
    note: str = "",
    canvas: Canvas = WIDE,
) -> str:
    """points: [{"x", "y", "label", "err"?, "group"?, "faded"?}]; `front` indices (into the
    finite points) are joined by a dashed line. Faded points are drawn pale and left out of
    the axis limits (unless `show_all`); those outside the limits are counted in the note."""
    pts = [p for p in points if math.isfinite(p["x"]) and math.isfinite(p["y"])]
    if ylog:
        pts = [p for p in pts if p["y"] > 0]
    if not pts:
        return empty(title, "no finished runs yet", canvas)
    solid = [p for p in pts if not p.get("faded")]
    limit_pts = pts if show_all or not solid else solid

    def lo_hi(p):
        err = p.get("err") or 0
        lo = p["y"] - err
        return [p["y"] + err, lo if lo > 0 or not ylog else p["y"]]

    sc = scales(
        canvas,
        [p["x"] for p in limit_pts],
        [v for p in limit_pts for v in lo_hi(p)],
        ylog=ylog,
        xpad=0.08,
    )
    shown = [p for p in pts if sc.holds(p["x"], p["y"])]
    off = len(pts) - len(shown)
    if off and not note:
        note = f"{off} faded point{'s' if off > 1 else ''} off the axes (show all)"
    out = _frame(canvas, title, xlabel, ylabel, note)
    _axes(out, canvas, sc)
    groups = sorted({p.get("group", "") for p in pts})
    xy = [(sc.sx(p["x"]), sc.sy(p["y"])) for p in shown]
    placed = labels.place(
        [(x, y, p["label"]) for (x, y), p in zip(xy, shown, strict=True)], canvas.area
    )
    for p, (x, y), lab in zip(shown, xy, placed, strict=True):
        color = PALETTE[groups.index(p.get("group", "")) % len(PALETTE)]
        fade = ' opacity="0.35" class="faded"' if p.get("faded") else ""
        if p.get("err"):
            lo = max(p["y"] - p["err"], sc.ylo)
            hi = min(p["y"] + p["err"], sc.yhi)
            out.append(
                f'<line x1="{x:.1f}" y1="{sc.sy(lo):.1f}" x2="{x:.1f}" y2="{sc.sy(hi):.1f}" '
                f'stroke="{color}"{fade}/>'
            )
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"{fade}>'
            f"<title>{escape(p['label'])}: {p['y']:.2f}</title></circle>"
        )
        if lab is None:
            continue
        if lab.leader:
            x1, y1, x2, y2 = lab.leader
            out.append(
                f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                f'stroke="{BOX}" class="leader"/>'
            )
        out.append(
            f'<text x="{lab.x:.1f}" y="{lab.y:.1f}" text-anchor="{lab.anchor}" class="point" '
            f'font-size="{labels.FONT_PX}" fill="{MUTED}"{fade}>{escape(p["label"])}</text>'
        )
    if front:
        f = sorted((pts[i] for i in front if i < len(pts)), key=lambda p: p["x"])
        f = [p for p in f if sc.holds(p["x"], p["y"])]
        d = " ".join(f"{sc.sx(p['x']):.1f},{sc.sy(p['y']):.1f}" for p in f)
        out.append(
            f'<polyline points="{d}" fill="none" stroke="#c0504d" stroke-width="1.5" '
            f'stroke-dasharray="4 3" class="front"><title>Pareto front</title></polyline>'
        )
    legend = [g for g in groups if g]
    for i, g in enumerate(legend):
        # the legend is a row above the plot, right-aligned, so it never hides a point
        lx = canvas.w - canvas.pad_r - 110 * (len(legend) - i)
        color = PALETTE[groups.index(g) % len(PALETTE)]
        ly = canvas.pad_t - 14
        out.append(
            f'<circle cx="{lx + 4}" cy="{ly - 4}" r="4" fill="{color}"/>'
            f'<text x="{lx + 12}" y="{ly}" class="legend" font-size="11" fill="{MUTED}">'
            f"{escape(g)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def lines_table(series, *, xlabel: str, ylabel: str, per_series: int = 40) -> dict:
    """The data of a line chart as a table (under the chart, in <details>): each series thinned
    to about `per_series` evenly spaced points, its last one kept."""
    rows = []
    for label, s in series:
        step = max(1, math.ceil(len(s) / per_series))
        keep = s[::step] + ([s[-1]] if s and (len(s) - 1) % step else [])
        rows += [(label, _fmt(x), f"{y:.4g}") for x, y in keep if math.isfinite(x)]
    return {"columns": ("series", xlabel, ylabel), "rows": rows}


def points_table(points: list[dict], *, xlabel: str, ylabel: str) -> dict:
    rows = [
        (
            p["label"],
            p.get("group", ""),
            f"{p['x']:.4g}",
            f"{p['y']:.4g}",
            f"{p['err']:.3g}" if p.get("err") else "",
            "faded (killed or control)" if p.get("faded") else "",
        )
        for p in sorted(points, key=lambda p: p["y"])
    ]
    return {"columns": ("point", "group", xlabel, ylabel, "± std", "drawn"), "rows": rows}
