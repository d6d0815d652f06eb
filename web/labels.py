"""Point labels that never overlap: each label tries positions around its point, nearest first,
then farther out with a leader line; a label that finds no free place is left off the chart
(it stays in the point's tooltip and in the data table under the chart).

Text widths are estimated, generously, from the character count: the SVG is drawn on the
server, which cannot measure fonts, so the estimate errs wide (DejaVu Sans, the widest common
fallback, is about 0.6 em per character).
"""

from __future__ import annotations

from dataclasses import dataclass

FONT_PX = 11
CHAR_W = 0.66 * FONT_PX
ASCENT, DESCENT = 0.8 * FONT_PX, 0.25 * FONT_PX
MARKER_R = 5  # a point's dot, with a little air


@dataclass(frozen=True)
class Label:
    x: float  # the text's anchor point (start or end of its baseline)
    y: float
    anchor: str  # "start" or "end"
    leader: tuple[float, float, float, float] | None  # a line from the point to the label


Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def text_box(text: str, x: float, y: float, anchor: str) -> Box:
    w = CHAR_W * len(text)
    x0 = x if anchor == "start" else x - w
    return (x0, y - ASCENT, x0 + w, y + DESCENT)


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(a: Box, area: Box) -> bool:
    return a[0] >= area[0] and a[1] >= area[1] and a[2] <= area[2] and a[3] <= area[3]


def _candidates(x: float, y: float):
    """(text x, baseline y, anchor, leader?) around a point, nearest first."""
    for r in (7, 20, 36, 56):
        lead = r > 7
        for dx, dy, anchor in (
            (r, -r / 2, "start"),
            (r, r / 2 + ASCENT, "start"),
            (-r, -r / 2, "end"),
            (-r, r / 2 + ASCENT, "end"),
            (0, -r - DESCENT, "middle"),
            (0, r + ASCENT, "middle"),
        ):
            yield x + dx, y + dy, anchor, lead


def place(points: list[tuple[float, float, str]], area: Box) -> list[Label | None]:
    """A label position for each (x, y, text) in chart pixels, or None where none fits inside
    `area` without touching another label or any point's dot."""
    dots = [(x - MARKER_R, y - MARKER_R, x + MARKER_R, y + MARKER_R) for x, y, _ in points]
    taken: list[Box] = []
    out: list[Label | None] = [None] * len(points)
    # leftmost first, so labels in a dense column fan out in a stable order
    for i in sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1])):
        x, y, text = points[i]
        for tx, ty, anchor, lead in _candidates(x, y):
            if anchor == "middle":
                w = CHAR_W * len(text)
                tx, anchor = tx - w / 2, "start"
            box = text_box(text, tx, ty, anchor)
            if not _inside(box, area):
                continue
            if any(_overlaps(box, b) for b in taken) or any(_overlaps(box, d) for d in dots):
                continue
            taken.append(box)
            end_x = box[0] if box[0] > x else box[2] if box[2] < x else (box[0] + box[2]) / 2
            end_y = box[3] if box[3] < y else box[1] if box[1] > y else y
            out[i] = Label(tx, ty, anchor, (x, y, end_x, end_y) if lead else None)
            break
    return out
