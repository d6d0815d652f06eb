"""Small server-rendered SVG charts: no JavaScript library, no CDN, cheap to cache.

Each function returns an SVG document as a string. Axes are linear (or log-y for curves), with a
few ticks; series are polylines or dots. Sizes are in CSS pixels; the SVG scales with its box.
"""

from __future__ import annotations

import math
from html import escape

PALETTE = ["#2f6fb0", "#c0504d", "#2e7d32", "#8e6bb8", "#d08a1f", "#3a9b9b", "#7f7f7f"]
W, H = 640, 300
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 28, 40


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


def _fmt(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.3g}"


def _frame(title: str, xlabel: str, ylabel: str, note: str = "") -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f'<text x="{PAD_L}" y="18" class="title">{escape(title)}</text>',
        f'<text x="{W - PAD_R}" y="18" class="note" text-anchor="end">{escape(note)}</text>',
        f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 6}" text-anchor="middle" '
        f'class="label">{escape(xlabel)}</text>',
        f'<text x="14" y="{(PAD_T + H - PAD_B) / 2}" text-anchor="middle" class="label" '
        f'transform="rotate(-90 14 {(PAD_T + H - PAD_B) / 2})">{escape(ylabel)}</text>',
    ]


def _axes(out, xlo, xhi, ylo, yhi, sx, sy, ylog=False):
    for t in _ticks(xlo, xhi):
        x = sx(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{PAD_T}" x2="{x:.1f}" y2="{H - PAD_B}" '
            f'class="grid"/><text x="{x:.1f}" y="{H - PAD_B + 14}" '
            f'text-anchor="middle" class="tick">{_fmt(t)}</text>'
        )
    ys = _ticks(math.log10(ylo), math.log10(yhi)) if ylog else _ticks(ylo, yhi)
    for t in ys:
        v = 10**t if ylog else t
        y = sy(v)
        out.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" '
            f'class="grid"/><text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'class="tick">{_fmt(v)}</text>'
        )
    out.append(
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" '
        f'height="{H - PAD_T - PAD_B}" class="box"/>'
    )


def _scales(xs, ys, ylog=False):
    xlo, xhi = min(xs), max(xs)
    ylo, yhi = min(ys), max(ys)
    if xhi == xlo:
        xlo, xhi = xlo - 1, xhi + 1
    if ylog:
        ylo, yhi = max(ylo, 1e-9), max(yhi, ylo * 1.01)
        lo, hi = math.log10(ylo), math.log10(yhi)
        pad = (hi - lo) * 0.05 or 0.05
        lo, hi = lo - pad, hi + pad
        ylo, yhi = 10**lo, 10**hi

        def sy(v):
            return H - PAD_B - (math.log10(max(v, 1e-9)) - lo) / (hi - lo) * (H - PAD_T - PAD_B)
    else:
        if yhi == ylo:
            ylo, yhi = ylo - 1, yhi + 1
        pad = (yhi - ylo) * 0.05
        ylo, yhi = ylo - pad, yhi + pad

        def sy(v):
            return H - PAD_B - (v - ylo) / (yhi - ylo) * (H - PAD_T - PAD_B)

    def sx(v):
        return PAD_L + (v - xlo) / (xhi - xlo) * (W - PAD_L - PAD_R)

    return xlo, xhi, ylo, yhi, sx, sy


def empty(title: str, message: str) -> str:
    out = _frame(title, "", "")
    out.append(
        f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="empty">'
        f"{escape(message)}</text></svg>"
    )
    return "".join(out)


def lines(
    title: str,
    series: list[tuple[str, list[tuple[float, float]]]],
    *,
    xlabel: str,
    ylabel: str,
    ylog: bool = False,
    note: str = "",
) -> str:
    """Line chart; series = [(label, [(x, y), ...]), ...]."""
    pts = [p for _, s in series for p in s if math.isfinite(p[1]) and (p[1] > 0 or not ylog)]
    if not pts:
        return empty(title, "no points yet")
    xlo, xhi, ylo, yhi, sx, sy = _scales([p[0] for p in pts], [p[1] for p in pts], ylog)
    out = _frame(title, xlabel, ylabel, note)
    _axes(out, xlo, xhi, ylo, yhi, sx, sy, ylog)
    for i, (label, s) in enumerate(series):
        s = [p for p in s if math.isfinite(p[1]) and (p[1] > 0 or not ylog)]
        if not s:
            continue
        color = PALETTE[i % len(PALETTE)]
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        dash = ' stroke-dasharray="5 3"' if label.startswith("baseline") else ""
        out.append(
            f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.8"'
            f"{dash}><title>{escape(label)}</title></polyline>"
        )
        if len(s) == 1:
            out.append(
                f'<circle cx="{sx(s[0][0]):.1f}" cy="{sy(s[0][1]):.1f}" r="3" fill="{color}"/>'
            )
        ly = PAD_T + 14 + 14 * i
        out.append(
            f'<line x1="{W - PAD_R - 150}" y1="{ly - 4}" x2="{W - PAD_R - 134}" '
            f'y2="{ly - 4}" stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{W - PAD_R - 130}" y="{ly}" class="legend">{escape(label)}</text>'
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
    note: str = "",
) -> str:
    """points: [{"x", "y", "label", "err"?, "group"?}]; `front` indices are joined in red."""
    pts = [p for p in points if math.isfinite(p["x"]) and math.isfinite(p["y"])]
    if not pts:
        return empty(title, "no finished runs yet")
    ys = [p["y"] + p.get("err", 0) for p in pts] + [p["y"] - p.get("err", 0) for p in pts]
    xlo, xhi, ylo, yhi, sx, sy = _scales([p["x"] for p in pts], ys)
    out = _frame(title, xlabel, ylabel, note)
    _axes(out, xlo, xhi, ylo, yhi, sx, sy)
    groups = sorted({p.get("group", "") for p in pts})
    for p in pts:
        color = PALETTE[groups.index(p.get("group", "")) % len(PALETTE)]
        x, y = sx(p["x"]), sy(p["y"])
        if p.get("err"):
            out.append(
                f'<line x1="{x:.1f}" y1="{sy(p["y"] - p["err"]):.1f}" x2="{x:.1f}" '
                f'y2="{sy(p["y"] + p["err"]):.1f}" stroke="{color}"/>'
            )
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}">'
            f"<title>{escape(p['label'])}: {p['y']:.2f}</title></circle>"
            f'<text x="{x + 6:.1f}" y="{y - 6:.1f}" class="point">'
            f"{escape(p['label'])}</text>"
        )
    if front:
        f = sorted((pts[i] for i in front if i < len(pts)), key=lambda p: p["x"])
        d = " ".join(f"{sx(p['x']):.1f},{sy(p['y']):.1f}" for p in f)
        out.append(
            f'<polyline points="{d}" fill="none" stroke="#c0504d" stroke-width="1.5" '
            f'stroke-dasharray="4 3"><title>Pareto front</title></polyline>'
        )
    for i, g in enumerate(groups):
        if g:
            out.append(
                f'<circle cx="{W - PAD_R - 140}" cy="{PAD_T + 10 + 14 * i}" r="4" '
                f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{W - PAD_R - 132}" '
                f'y="{PAD_T + 14 + 14 * i}" class="legend">{escape(g)}</text>'
            )
    out.append("</svg>")
    return "".join(out)
