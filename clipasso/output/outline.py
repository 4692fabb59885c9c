"""Filled shapes as strokes: the outline of a closed subpath, simplified to a few cubic segments.

What ComfyUI's vector packs make (vtracer, potrace, core's vectorize nodes) is fill-only shapes. To use
such a drawing as a starting sketch, `read_svg(..., fills="outline")` turns every closed subpath of a
filled shape into one stroke along its outline. This module does the geometry: sample the subpath's
cubics into a polyline, measure its area (to drop a tracer's specks and the canvas-sized background),
and fit k cubic segments to it, so every outline has the same P = 1 + 3k points whatever its source
had. The fit: resample the outline by arc length, cut it into k pieces of equal length, and give each
piece the cubic that keeps the piece's end points and is closest to its samples in least squares
(the samples sit at equal steps of the curve parameter, so one 2x2 system serves every piece).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

_PER_SEGMENT = 8  # polyline samples per source cubic (area and fit); a tracer's cubics are short
_PER_PIECE = 16  # arc-length samples per fitted segment


def flatten(points: Sequence[Tuple[float, float]], per_segment: int = _PER_SEGMENT) -> np.ndarray:
    """A closed polyline ``[N, 2]`` through the cubics ``points`` (1 + 3n control points), closed with
    a straight line back to the start when the subpath does not end there (as a fill closes it)."""
    ctrl = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = (len(ctrl) - 1) // 3
    p0, c1, c2, p1 = (ctrl[i : 3 * n + i : 3][:n, None, :] for i in range(4))
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[None, :, None]
    u = 1.0 - t
    poly = (u**3 * p0 + 3 * u * u * t * c1 + 3 * u * t * t * c2 + t**3 * p1).reshape(-1, 2)
    return np.concatenate([poly, ctrl[-1:], ctrl[:1]], 0)  # the last point, then back to the first


def area(poly: np.ndarray) -> float:
    """Area enclosed by a closed polyline (shoelace formula, unsigned) in px²."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])))


def _bernstein(m: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, m + 1)
    u = 1.0 - t
    return np.stack([u**3, 3 * u * u * t, 3 * u * t * t, t**3], 1)  # [m+1, 4]


def fit_closed(poly: np.ndarray, segments: int) -> List[Tuple[float, float]]:
    """``1 + 3 segments`` control points of a closed stroke that follows the polyline ``poly``."""
    seg_len = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    total = float(seg_len.sum())
    start = poly[0]
    if total <= 0.0:
        return [(float(start[0]), float(start[1]))] * (1 + 3 * segments)
    s = np.concatenate([[0.0], np.cumsum(seg_len)])
    target = np.linspace(0.0, total, segments * _PER_PIECE + 1)
    samples = np.stack([np.interp(target, s, poly[:, 0]), np.interp(target, s, poly[:, 1])], 1)
    samples[-1] = samples[0]  # closed exactly
    # piece j: samples j*m .. (j+1)*m, end points shared with its neighbours
    m = _PER_PIECE
    idx = np.arange(segments)[:, None] * m + np.arange(m + 1)[None, :]
    q = samples[idx]  # [k, m+1, 2]
    b = _bernstein(m)  # [m+1, 4]
    ends0, ends1 = q[:, :1, :], q[:, -1:, :]
    rest = q - b[None, :, :1] * ends0 - b[None, :, 3:] * ends1  # what the two inner points must give
    normal = b[:, 1:3].T @ b[:, 1:3]  # [2, 2], the same for every piece
    rhs = np.einsum("mi,kmd->kid", b[:, 1:3], rest)  # [k, 2, 2]
    inner = np.einsum("ij,kjd->kid", np.linalg.inv(normal), rhs)
    out = [(float(q[0, 0, 0]), float(q[0, 0, 1]))]
    for j in range(segments):
        for p in (inner[j, 0], inner[j, 1], q[j, -1]):
            out.append((float(p[0]), float(p[1])))
    return out
