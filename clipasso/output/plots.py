"""Small line charts drawn with Pillow (no plotting library needed): the loss-versus-strokes curve of
automatic abstraction and the prefix losses of a drawing order, for the ComfyUI nodes and docs/."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def _nice_ticks(lo: float, hi: float, n: int = 5):
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    first = math.ceil(lo / step) * step
    ticks = []
    v = first
    while v <= hi + 1e-9 * step:
        ticks.append(v)
        v += step
    return ticks


def line_chart(
    series: Sequence[Tuple[str, Sequence[float], Sequence[float]]],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: Tuple[int, int] = (640, 400),
    marker_x: Optional[float] = None,
    marker_label: str = "",
    hline: Optional[float] = None,
    hline_label: str = "",
):
    """A PIL RGB image of one or more (label, xs, ys) lines on shared axes.

    marker_x draws a vertical dashed line (e.g. the chosen stroke count); hline a horizontal one
    (e.g. the empty canvas's loss)."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 70, 20, 34 if title else 14, 46
    xs_all = [float(x) for _, xs, _ in series for x in xs]
    ys_all = [float(y) for _, _, ys in series for y in ys if math.isfinite(float(y))]
    if hline is not None and math.isfinite(hline):
        ys_all.append(float(hline))
    if not xs_all or not ys_all:
        raise ValueError("line_chart needs at least one finite point")
    x0, x1 = min(xs_all), max(xs_all)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = min(ys_all), max(ys_all)
    pad = 0.05 * (y1 - y0 or 1.0)
    y0, y1 = y0 - pad, y1 + pad

    def px(x, y):
        return (
            left + (x - x0) / (x1 - x0) * (w - left - right),
            h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom),
        )

    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    for t in _nice_ticks(y0, y1):
        _, yy = px(x0, t)
        d.line([(left, yy), (w - right, yy)], fill=(230, 230, 230))
        d.text((left - 6, yy), f"{t:.4g}", fill=(0, 0, 0), font=font, anchor="rm")
    xt = (
        sorted({round(v) for v in _nice_ticks(x0, x1, 8)})
        if x1 - x0 > 10
        else list(range(int(math.ceil(x0)), int(x1) + 1))
    )
    for t in xt:
        xx, _ = px(t, y0)
        d.line([(xx, h - bottom), (xx, h - bottom + 4)], fill=(0, 0, 0))
        d.text((xx, h - bottom + 6), str(t), fill=(0, 0, 0), font=font, anchor="mt")
    if title:
        d.text((w / 2, 8), title, fill=(0, 0, 0), font=font, anchor="mt")
    if xlabel:
        d.text(((left + w - right) / 2, h - 14), xlabel, fill=(0, 0, 0), font=font, anchor="mm")
    if ylabel:
        d.text((6, top - 4), ylabel, fill=(0, 0, 0), font=font, anchor="ls") if top > 20 else d.text(
            (6, 4), ylabel, fill=(0, 0, 0), font=font
        )

    def dashed(p, q, color):
        n = max(1, int(math.hypot(q[0] - p[0], q[1] - p[1]) // 6))
        for i in range(0, n, 2):
            a = (p[0] + (q[0] - p[0]) * i / n, p[1] + (q[1] - p[1]) * i / n)
            b = (p[0] + (q[0] - p[0]) * (i + 1) / n, p[1] + (q[1] - p[1]) * (i + 1) / n)
            d.line([a, b], fill=color, width=1)

    if hline is not None and math.isfinite(hline):
        a, b = px(x0, hline), px(x1, hline)
        dashed(a, b, (120, 120, 120))
        if hline_label:
            d.text((b[0] - 4, b[1] - 3), hline_label, fill=(90, 90, 90), font=font, anchor="rb")
    if marker_x is not None:
        a, b = px(marker_x, y0), px(marker_x, y1)
        dashed(a, b, (0, 0, 0))
        if marker_label:
            d.text((a[0] + 4, h - bottom - 4), marker_label, fill=(0, 0, 0), font=font, anchor="lb")
    for i, (label, xs, ys) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = [px(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(float(y))]
        if len(pts) > 1:
            d.line(pts, fill=color, width=2)
        for p in pts:
            d.ellipse([p[0] - 2.5, p[1] - 2.5, p[0] + 2.5, p[1] + 2.5], fill=color)
        if label:
            lx, ly = w - right - 8, top + 8 + 14 * i
            d.line([(lx - 150, ly), (lx - 130, ly)], fill=color, width=2)
            d.text((lx - 126, ly), label, fill=(0, 0, 0), font=font, anchor="lm")
    return img


def abstraction_chart(result, size=(640, 400)):
    """Loss versus stroke count of an `AbstractionResult`, the chosen count marked."""
    return line_chart(
        [("", result.counts, result.losses)],
        title=f"automatic abstraction: {result.count} strokes keep fidelity >= {result.fidelity:g}",
        xlabel="strokes",
        ylabel="eval loss",
        size=size,
        marker_x=result.count,
        marker_label=f"chosen: {result.count}",
        hline=result.blank_loss,
        hline_label="empty canvas",
    )


def order_chart(result, extra_series=(), size=(640, 400)):
    """Prefix loss versus strokes drawn of an `OrderResult` (plus other orders to compare)."""
    n = len(result.prefix_losses)
    series = [("greedy order", list(range(n)), [float(v) for v in result.prefix_losses])] + list(extra_series)
    return line_chart(
        series, title="drawing order: loss of each prefix", xlabel="strokes drawn", ylabel="eval loss", size=size
    )


__all__ = ["line_chart", "abstraction_chart", "order_chart"]
