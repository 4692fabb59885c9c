"""Differentiable rasterizer for open cubic Bezier strokes, in plain PyTorch.

What a pixel sees (the same semantics as diffvg as CLIPasso used it):
- every cubic segment is flattened into a polyline whose piece count adapts to the curve
  (flatness error below ``FLATNESS_TOL`` px and pieces no longer than ``MAX_PIECE_PX``);
- a pixel's distance ``d`` to a stroke is the distance from its centre to the nearest polyline
  piece, which gives round caps and round joins;
- coverage is the exact 1-D box filter of a band of half-width ``r`` over the pixel:
  ``len([d - r, d + r] & [-1/2, 1/2])``. It is exact for axis-aligned strokes and is the limit of
  diffvg's supersampling; ``r`` is the HALF-width (1.5 draws a 3 px line);
- a stroke's alpha is coverage times its colour's alpha; strokes are composited in order with the
  "over" operator onto the background.

Speed comes from never looking at pixel-segment pairs that cannot touch: a search without
gradients bins every polyline piece's bounding box into 4x4-pixel tiles and keeps only the
(stroke, pixel) pairs within reach, with the nearest piece of each. Only those pairs are then
recomputed with gradients, and compositing runs in log space over them. Work and memory grow with
the inked area, not with pixels x segments x strokes.

``backend="dense"`` is the naive reference (all pixels x all pieces, plain autograd) used by the
tests and the benchmark; ``backend="diffvg"`` calls pydiffvg when it is installed.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch

from ..settings import diffvg_missing_message  # noqa: F401 - the message, defined with the renderer setting
from ..strokes import StrokeError, Strokes

FLATNESS_TOL = 0.05  # px: max distance between a cubic and its polyline
MAX_PIECE_PX = 6.0  # px: longer pieces have loose bounding boxes and waste tile work
MAX_PIECES = 1024  # per cubic segment
TILE = 4  # px: side of the tiles the search bins pieces into
_PAIRS_PER_CHUNK = 1 << 18  # (piece, tile) pairs per search chunk: bounds search memory (~40 MB)
_PIECES_PER_GROUP = 1 << 18  # polyline pieces flattened and searched at once (strokes are grouped)
_ENTRIES_BEFORE_COMPACT = 1 << 22  # found (pixel, stroke) entries kept before duplicates are merged
_DENSE_SUFFIX_CELLS = 1 << 22  # pixels x max strokes per pixel above which compositing avoids a dense table

MAX_RENDER_PIXELS = 1 << 25
"""Most pixels `render` draws in one call, all candidates together (32 Mi: two 4096 x 4096 pictures):
a bound on the picture buffers, which need about 40 bytes a pixel while rendering."""

Background = Optional[Union[float, Sequence[float], torch.Tensor]]


class Render(NamedTuple):
    image: torch.Tensor  # [B, 3, H, W]: over the background, or straight ink colour when background is None
    alpha: torch.Tensor  # [B, H, W]: total ink opacity (coverage for opaque strokes)


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
def _cubics(points: torch.Tensor) -> torch.Tensor:
    """[B, S, 1+3k, 2] -> [B, S, k, 4, 2] (each cubic's 4 control points)."""
    k = (points.shape[2] - 1) // 3
    idx = torch.arange(k, device=points.device)[:, None] * 3 + torch.arange(4, device=points.device)[None, :]
    return points[:, :, idx]


def piece_counts(cubics: torch.Tensor, tol: float = FLATNESS_TOL, max_piece: float = MAX_PIECE_PX) -> torch.Tensor:
    """Polyline pieces per cubic (``[...,4,2]`` -> ``[...]`` long), adapted to curvature and length.

    Uniform subdivision of a cubic into n pieces deviates from the curve by at most
    (3/4) * max|P0 - 2P1 + P2|, |P1 - 2P2 + P3| / n^2, so n = ceil(sqrt(0.75 M / tol)) keeps the
    error under ``tol`` px whatever the canvas size.
    """
    c = cubics.detach()
    d2a = (c[..., 0, :] - 2 * c[..., 1, :] + c[..., 2, :]).norm(dim=-1)
    d2b = (c[..., 1, :] - 2 * c[..., 2, :] + c[..., 3, :]).norm(dim=-1)
    m = torch.maximum(d2a, d2b)
    n_flat = torch.ceil(torch.sqrt(0.75 * m / tol))
    length = (c[..., 1:, :] - c[..., :-1, :]).norm(dim=-1).sum(-1)  # control polygon bounds the arc
    n_len = torch.ceil(length / max_piece)
    n = torch.maximum(n_flat, n_len).clamp(1, MAX_PIECES)
    return n.long()


def _bezier_basis(t: torch.Tensor) -> torch.Tensor:
    s = 1 - t
    return torch.stack([s * s * s, 3 * s * s * t, 3 * s * t * t, t * t * t], -1)


def curve_samples(points: torch.Tensor, samples: int) -> torch.Tensor:
    """``[B,S,k,samples,2]``: points along each cubic of ``points`` ``[B,S,1+3k,2]`` at ``samples`` evenly
    spaced parameters, both ends included."""
    t = torch.linspace(0, 1, samples, device=points.device, dtype=points.dtype)
    return torch.einsum("tc,bskcd->bsktd", _bezier_basis(t), _cubics(points))


def flatten(points: torch.Tensor, counts: Optional[torch.Tensor] = None):
    """Polyline pieces of every stroke, differentiable w.r.t. ``points``.

    Returns ``(A, Bp, stroke_of_piece)``: piece start and end points ``[N, 2]`` and the flat stroke
    index ``b * S + s`` of each piece, in stroke order.
    """
    B, S, P, _ = points.shape
    cub = _cubics(points).reshape(-1, 4, 2)  # [C, 4, 2], C = B*S*k
    k = (P - 1) // 3
    n = piece_counts(cub) if counts is None else counts.reshape(-1)
    dev = points.device
    C = cub.shape[0]
    cubic_of_piece = torch.repeat_interleave(torch.arange(C, device=dev), n)
    first = torch.cumsum(n, 0) - n
    j = torch.arange(cubic_of_piece.numel(), device=dev) - first[cubic_of_piece]
    nf = n[cubic_of_piece].to(points.dtype)
    t0 = j.to(points.dtype) / nf
    t1 = (j + 1).to(points.dtype) / nf
    ctrl = cub[cubic_of_piece]  # [N, 4, 2]
    A = torch.einsum("nc,ncd->nd", _bezier_basis(t0), ctrl)
    Bp = torch.einsum("nc,ncd->nd", _bezier_basis(t1), ctrl)
    return A, Bp, cubic_of_piece // k


def _seg_dist2(px, py, ax, ay, bx, by):
    """Squared distance from points (px, py) to segments a-b (broadcasting)."""
    vx, vy = bx - ax, by - ay
    wx, wy = px - ax, py - ay
    t = ((wx * vx + wy * vy) / (vx * vx + vy * vy).clamp_min(1e-12)).clamp(0, 1)
    dx, dy = wx - t * vx, wy - t * vy
    return dx * dx + dy * dy


def _safe_sqrt(x):
    # sqrt'(0) is infinite; a pixel exactly on the centreline is fully covered (zero gradient) anyway
    return torch.sqrt(x.clamp_min(1e-12))


def coverage(d: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Box-filtered coverage of a pixel whose centre is ``d`` px from a band of half-width ``r``."""
    half = 0.5
    return (torch.minimum(d + r, d.new_tensor(half)) - torch.maximum(d - r, d.new_tensor(-half))).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# the fast path: tile search without gradients, exact recomputation on the few pairs that matter
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def _near_pairs(A, Bp, stroke_of_piece, reach, S, H, W):
    """(key, piece) for each (candidate, pixel, stroke) within reach, with its nearest piece.

    key = (b * H * W + pixel) * S + s, sorted ascending, so entries of one pixel are contiguous and
    in stroke (painting) order.
    """
    dev, dt = A.device, A.dtype
    lo = torch.minimum(A, Bp) - reach[:, None]
    hi = torch.maximum(A, Bp) + reach[:, None]
    ntx, nty = (W + TILE - 1) // TILE, (H + TILE - 1) // TILE
    # a pixel centre x = ix + 0.5 lies in [lo, hi]  <=>  ix in [lo - 0.5, hi - 0.5]
    tx0 = torch.floor((lo[:, 0] - 0.5) / TILE).clamp(0, ntx - 1).long()
    tx1 = torch.floor((hi[:, 0] - 0.5) / TILE).clamp(0, ntx - 1).long()
    ty0 = torch.floor((lo[:, 1] - 0.5) / TILE).clamp(0, nty - 1).long()
    ty1 = torch.floor((hi[:, 1] - 0.5) / TILE).clamp(0, nty - 1).long()
    visible = (hi[:, 0] > 0) & (lo[:, 0] < W) & (hi[:, 1] > 0) & (lo[:, 1] < H)
    wx = tx1 - tx0 + 1
    cnt = wx * (ty1 - ty0 + 1) * visible.long()
    cum = torch.cumsum(cnt, 0)
    total = int(cum[-1]) if cum.numel() else 0
    empty = torch.empty(0, dtype=torch.long, device=dev)
    if total == 0:
        return empty, empty
    loc = torch.arange(TILE * TILE, device=dev)
    lx, ly = loc % TILE, loc // TILE
    keys, pieces, dists = [], [], []
    held = 0
    # chunk over pieces so the (pair, 16 pixels) buffers stay bounded for any canvas and stroke count
    bounds = torch.searchsorted(
        cum, torch.arange(_PAIRS_PER_CHUNK, total + _PAIRS_PER_CHUNK, _PAIRS_PER_CHUNK, device=dev), right=False
    ).tolist()
    start = 0
    for stop in bounds:
        stop = min(max(stop + 1, start + 1), cnt.numel())
        if stop <= start:
            continue
        c = cnt[start:stop]
        n_pairs = int(c.sum())
        if n_pairs:
            seg = torch.repeat_interleave(torch.arange(start, stop, device=dev), c)
            off = torch.cumsum(c, 0) - c
            j = torch.arange(n_pairs, device=dev) - off[seg - start]
            tx = tx0[seg] + j % wx[seg]
            ty = ty0[seg] + j // wx[seg]
            ix = tx[:, None] * TILE + lx[None]
            iy = ty[:, None] * TILE + ly[None]
            a, b = A[seg], Bp[seg]
            d2 = _seg_dist2(ix.to(dt) + 0.5, iy.to(dt) + 0.5, a[:, 0:1], a[:, 1:2], b[:, 0:1], b[:, 1:2])
            rr = reach[seg][:, None]
            keep = (d2 < rr * rr) & (ix < W) & (iy < H)
            pi, li = keep.nonzero(as_tuple=True)
            segk = seg[pi]
            st = stroke_of_piece[segk]  # b * S + s
            bb, ss = st // S, st % S
            pix = iy[pi, li] * W + ix[pi, li]
            keys.append((bb * (H * W) + pix) * S + ss)
            pieces.append(segk)
            dists.append(d2[pi, li])
            held += pi.numel()
            if held > _ENTRIES_BEFORE_COMPACT and len(keys) > 1:
                # many pieces near the same pixels (wide or dense strokes): keep only the nearest so far
                k1, p1, q1 = _nearest_per_key(torch.cat(keys), torch.cat(pieces), torch.cat(dists))
                keys, pieces, dists, held = [k1], [p1], [q1], k1.numel()
        start = stop
        if start >= cnt.numel():
            break
    if not keys:
        return empty, empty
    key, piece, _ = _nearest_per_key(torch.cat(keys), torch.cat(pieces), torch.cat(dists))
    return key, piece


def _nearest_per_key(key, piece, d2):
    """One entry per key (sorted ascending): the one with the nearest piece (the first such on ties)."""
    if key.numel() == 0:
        return key, piece, d2
    order = torch.argsort(key)  # one sort; the minimum per run comes from a scatter
    key, piece, d2 = key[order], piece[order], d2[order]
    uniq, inv = torch.unique_consecutive(key, return_inverse=True)
    G = uniq.numel()
    best = torch.full((G,), float("inf"), dtype=d2.dtype, device=d2.device).scatter_reduce(
        0, inv, d2, "amin", include_self=True
    )
    at_min = (d2 == best[inv]).nonzero(as_tuple=True)[0]
    pick = torch.full((G,), key.numel(), dtype=torch.long, device=key.device).scatter_reduce(
        0, inv[at_min], at_min, "amin", include_self=True
    )
    return uniq, piece[pick], d2[pick]


def _composite_entries(alpha_e, group, colors_e, n_groups_hint=None):
    """Per-pixel "over" compositing of sorted entries.

    ``alpha_e`` [E] stroke alphas, ``group`` [E] pixel ids (non-decreasing, entries of one pixel in
    painting order), ``colors_e`` [E, 3] or None when every stroke has the same colour.
    Returns unique pixel ids, transmittance [G] and premultiplied ink [G, 3] (None when uniform).
    """
    uniq, inv, counts = torch.unique_consecutive(group, return_inverse=True, return_counts=True)
    # log(1 - a); a == 1 exactly (full coverage, zero gradient) would give -inf
    eps = 1e-12 if alpha_e.dtype == torch.float64 else 1e-6
    log_t = torch.log1p(-alpha_e.clamp(max=1 - eps))
    G = uniq.numel()
    total_log = torch.zeros(G, dtype=alpha_e.dtype, device=alpha_e.device).index_add(0, inv, log_t)
    trans = torch.exp(total_log)
    if colors_e is None:
        return uniq, trans, None
    # transmittance of what is painted after each entry: a suffix sum within its pixel
    starts = torch.cumsum(counts, 0) - counts
    D = int(counts.max())
    if G * D <= _DENSE_SUFFIX_CELLS:
        rank = torch.arange(group.numel(), device=group.device) - starts[inv]
        M = torch.zeros(G, D, dtype=alpha_e.dtype, device=alpha_e.device).index_put((inv, rank), log_t)
        suffix = torch.flip(torch.cumsum(torch.flip(M, [1]), 1), [1])  # inclusive
        after = torch.exp(suffix[inv, rank] - log_t)
    else:
        # many strokes over one pixel: the same suffix sums from one running sum over all entries
        # (in float64, so the differences of large running sums stay exact enough), memory O(entries)
        run = torch.cumsum(log_t.double(), 0)  # inclusive prefix, all pixels
        before_pixel = torch.cat([run.new_zeros(1), run])[starts]  # prefix up to each pixel's start
        within = run - before_pixel[inv]  # inclusive prefix within the pixel
        after = torch.exp(total_log.double()[inv] - within).to(alpha_e.dtype)
    ink = torch.zeros(G, 3, dtype=alpha_e.dtype, device=alpha_e.device).index_add(
        0, inv, colors_e * (alpha_e * after)[:, None]
    )
    return uniq, trans, ink


def _drawn_counts(points, widths, H, W):
    """Pieces per cubic [B, S, k] for rendering: as `piece_counts`, but 0 for cubics that cannot touch
    the canvas (the control points' box, grown by the stroke's reach, misses it: a cubic lies inside its
    control polygon) and for the zero-length segments that pad a stroke at its end (all four control
    points on the previous segment's end point, which that segment already draws)."""
    cub = _cubics(points).detach()  # [B,S,k,4,2]
    n = piece_counts(cub)
    reach = (widths.detach() + 0.5)[..., None]  # [B,S,1]
    lo, hi = cub.amin(-2), cub.amax(-2)  # [B,S,k,2]
    off = (hi[..., 0] + reach <= 0) | (lo[..., 0] - reach >= W) | (hi[..., 1] + reach <= 0) | (lo[..., 1] - reach >= H)
    pad = (cub == cub[..., :1, :]).all(-1).all(-1)
    pad[..., 0] = False  # a stroke's first segment always draws
    return torch.where(off | pad, torch.zeros_like(n), n)


def _stroke_groups(pieces_per_stroke: torch.Tensor, budget: int):
    """Consecutive (start, stop) ranges of flat strokes with about `budget` pieces each (at least one stroke)."""
    cum = torch.cumsum(pieces_per_stroke, 0).tolist()
    groups, start, base = [], 0, 0
    for i, c in enumerate(cum):
        if c - base > budget and i > start:
            groups.append((start, i))
            start, base = i, cum[i - 1]
    groups.append((start, len(cum)))
    return groups


def _rasterize_tiled(points, widths, colors, H, W, background):
    """Strokes are flattened and searched a group at a time (about `_PIECES_PER_GROUP` pieces each),
    and the groups are composited in painting order, so memory stays bounded for any stroke count."""
    Bn, S, P, _ = points.shape
    HW = H * W
    dev, dt = points.device, points.dtype
    counts = _drawn_counts(points, widths, H, W)  # [B,S,k]
    flat_pts = points.reshape(1, Bn * S, P, 2)
    flat_counts = counts.reshape(Bn * S, -1)
    r_flat = widths.reshape(-1)
    col = colors.reshape(-1, 4)
    rgb_all = col[:, :3]
    uniform = bool((rgb_all.detach() == rgb_all.detach()[:1]).all())
    trans_img = torch.ones(Bn * HW, dtype=dt, device=dev)  # what shows through all ink
    ink_img = torch.zeros(Bn * HW, 3, dtype=dt, device=dev)  # premultiplied ink colour
    groups = _stroke_groups(flat_counts.sum(-1), _PIECES_PER_GROUP)
    for s0, s1 in groups:
        A, Bp, stroke = flatten(flat_pts[:, s0:s1], flat_counts[s0:s1])
        if stroke.numel() == 0:
            continue
        stroke = stroke + s0  # flat index b * S + s
        reach = (r_flat.detach() + 0.5)[stroke]
        key, piece = _near_pairs(A.detach(), Bp.detach(), stroke, reach, S, H, W)
        if key.numel() == 0:
            continue
        group = key // S  # b * HW + pixel
        st = stroke[piece]
        pix = group % HW
        px = (pix % W).to(dt) + 0.5
        py = (pix // W).to(dt) + 0.5
        a, b = A[piece], Bp[piece]  # with gradients
        d = _safe_sqrt(_seg_dist2(px, py, a[:, 0], a[:, 1], b[:, 0], b[:, 1]))
        alpha_e = coverage(d, r_flat[st]) * col[st, 3]
        uniq, trans, ink = _composite_entries(alpha_e, group, None if uniform else rgb_all[st])
        if uniform:  # one ink colour: the over-composite telescopes to c * (1 - T)
            ink = (1 - trans)[:, None] * rgb_all[0][None, :]
            if colors.requires_grad and torch.is_grad_enabled():
                # ...but its colour gradient would all land on stroke 0's colour: each stroke's colour
                # gets its own (alpha * what is painted after it) through a term that is exactly 0 in
                # value, so the picture stays bit-for-bit the shortcut's
                _, _, per_stroke = _composite_entries(alpha_e.detach(), group, rgb_all[st])
                ink = (1 - trans)[:, None] * rgb_all[0].detach()[None, :] + (per_stroke - per_stroke.detach())
        if len(groups) == 1:
            # the usual case (a sketch's strokes fit one group): the picture is computed on the touched
            # pixels only and put into a blank canvas once, with no full-size arithmetic in the graph
            alpha_img = torch.zeros(Bn * HW, dtype=dt, device=dev).index_copy(0, uniq, 1 - trans)
            if background is None:
                straight = ink / (1 - trans).clamp_min(1e-8)[:, None]
                img = torch.zeros(Bn * HW, 3, dtype=dt, device=dev).index_copy(0, uniq, straight)
            else:
                bg = _bg(background, dev, dt)
                img = bg.expand(Bn * HW, 3).index_copy(0, uniq, bg[None, :] * trans[:, None] + ink)
            return (img.view(Bn, H, W, 3).permute(0, 3, 1, 2), alpha_img.view(Bn, H, W))
        # this group is painted over what is there: ink' = ink + T * ink_below, T' = T * T_below
        ink_img = ink_img.index_copy(0, uniq, ink + trans[:, None] * ink_img[uniq])
        trans_img = trans_img.index_copy(0, uniq, trans * trans_img[uniq])
    if (
        not trans_img.requires_grad
        and torch.is_grad_enabled()
        and any(t.requires_grad for t in (points, widths, colors))
    ):
        # nothing reaches the canvas: the picture does not depend on the strokes, but stays in the graph
        # (zero gradients) so that a caller's backward() works as for any other picture
        trans_img = trans_img + 0 * (points.sum() + widths.sum() + colors.sum())
    alpha_img = 1 - trans_img
    if background is None:
        img = ink_img / alpha_img.clamp_min(1e-8)[:, None]
    else:
        bg = _bg(background, dev, dt)
        img = bg[None, :] * trans_img[:, None] + ink_img
    return (img.view(Bn, H, W, 3).permute(0, 3, 1, 2), alpha_img.view(Bn, H, W))


# ---------------------------------------------------------------------------------------------
# the naive dense reference: every pixel against every piece
# ---------------------------------------------------------------------------------------------
def _rasterize_dense(points, widths, colors, H, W, background, chunk_elems: int = 1 << 24):
    Bn, S, P, _ = points.shape
    dev, dt = points.device, points.dtype
    cub = _cubics(points)  # [B,S,k,4,2]
    n = int(piece_counts(cub).max())  # one count for all: a rectangular tensor
    poly = curve_samples(points, n + 1)  # [B,S,k,n+1,2]
    A = poly[..., :-1, :].reshape(Bn * S, -1, 2)
    Bp = poly[..., 1:, :].reshape(Bn * S, -1, 2)
    ys, xs = torch.meshgrid(
        torch.arange(H, device=dev, dtype=dt) + 0.5, torch.arange(W, device=dev, dtype=dt) + 0.5, indexing="ij"
    )
    px, py = xs.reshape(-1), ys.reshape(-1)
    per = max(1, chunk_elems // (A.shape[1] * H * W))
    ds = []
    for s0 in range(0, Bn * S, per):
        a, b = A[s0 : s0 + per, :, None, :], Bp[s0 : s0 + per, :, None, :]
        d2 = _seg_dist2(px, py, a[..., 0], a[..., 1], b[..., 0], b[..., 1])  # [c, pieces, HW]
        ds.append(_safe_sqrt(d2.min(dim=1).values))
    d = torch.cat(ds).view(Bn, S, H * W)
    alpha = coverage(d, widths[..., None]) * colors[..., 3:4]  # [B,S,HW]
    one_minus = 1 - alpha
    # transmittance of the strokes painted after stroke s: reverse exclusive cumulative product
    rev = torch.cumprod(torch.flip(one_minus, [1]), 1)  # products from the top
    after = torch.flip(torch.cat([torch.ones_like(rev[:, :1]), rev[:, :-1]], 1), [1])
    trans = torch.prod(one_minus, 1)  # [B,HW]
    ink = torch.einsum("bsc,bsp->bcp", colors[..., :3], alpha * after)  # [B,3,HW]
    a_img = 1 - trans
    if background is None:
        img = ink / a_img.clamp_min(1e-8)[:, None]
    else:
        img = _bg(background, dev, dt)[None, :, None] * trans[:, None] + ink
    return img.view(Bn, 3, H, W), a_img.view(Bn, H, W)


# ---------------------------------------------------------------------------------------------
# diffvg, when installed
# ---------------------------------------------------------------------------------------------
def diffvg_available() -> bool:
    try:
        import pydiffvg  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


DIFFVG_SAMPLES = 2  # diffvg's supersampling per pixel side (CLIPasso's: 2 x 2)
_STRAIGHT_NUDGE = 1e-3  # px: inner control points moved apart across a straight segment (see below)


def _unstraighten(points: torch.Tensor) -> torch.Tensor:
    """[S, 1+3k, 2] float32 -> the same with every (nearly) straight cubic bent by a hair.

    diffvg draws next to nothing of a cubic whose cubic term ``p3 - 3 p2 + 3 p1 - p0`` vanishes
    (control points evenly on a line, as `read_svg` makes from an SVG ``L``): only its caps. Moving the
    inner control points by ``_STRAIGHT_NUDGE`` px to opposite sides of the chord gives that term a
    length of at least 6 x the nudge; the curve moves by at most 0.3 x the nudge. The shift is a constant:
    gradients pass through unchanged."""
    k = (points.shape[1] - 1) // 3
    if k == 0:
        return points
    with torch.no_grad():
        c = _cubics(points[None])[0]  # [S, k, 4, 2]
        p0, p1, p2, p3 = c.unbind(2)
        cubic_term = p3 - 3 * p2 + 3 * p1 - p0
        chord = p3 - p0
        n = torch.stack([-chord[..., 1], chord[..., 0]], -1)
        norm = n.norm(dim=-1, keepdim=True)
        n = torch.where(norm > 1e-6, n / norm.clamp_min(1e-6), torch.tensor([0.0, 1.0], dtype=n.dtype))
        along = (cubic_term * n).sum(-1, keepdim=True)
        weak = along.abs() < 6 * _STRAIGHT_NUDGE
        sign = torch.where(along >= 0, 1.0, -1.0)
        shift = torch.where(weak, sign * n * _STRAIGHT_NUDGE, torch.zeros_like(n))  # [S, k, 2]
        delta = torch.zeros_like(points)
        delta[:, 1::3] = -shift  # p1 of every cubic
        delta[:, 2::3] = shift  # p2
    return points + delta


def _rasterize_diffvg(points, widths, colors, H, W, background, samples: int = DIFFVG_SAMPLES, seed: int = 0):
    """pydiffvg's rendering, composited as `_rasterize_tiled` does; ``samples`` per pixel side.

    diffvg gets float32 tensors on the CPU (the build the tests make is CPU-only; its C++ reads
    float32 data): the casts and moves are in the graph, so gradients come back in the caller's dtype
    and device. diffvg makes each sample's colour straight (divided by its alpha) before it averages
    the samples, so its RGB is neither straight nor premultiplied where a pixel is partly covered by
    translucent ink. Two renders give the exact quantities instead: over opaque black its colour is the
    premultiplied ink (the average of colour x alpha over the samples), and without a background its
    alpha is the average alpha. Then, as ours: ``ink + bg (1 - a)`` over a background, and with
    ``background=None`` the straight colour ``ink / a`` (0 where there is no ink)."""
    import pydiffvg

    samples = int(samples)
    if samples < 1:
        raise ValueError(f"diffvg samples must be a positive whole number per pixel side; got {samples}")
    dev, dt = points.device, points.dtype
    cpu = torch.device("cpu")
    pydiffvg.set_device(cpu)
    pydiffvg.set_print_timing(False)
    pts = points.to(cpu, torch.float32)
    wid = widths.to(cpu, torch.float32)
    col = colors.to(cpu, torch.float32)
    k = (points.shape[2] - 1) // 3
    render_fn = pydiffvg.RenderFunction.apply
    black = torch.zeros(H, W, 4)
    black[..., 3] = 1.0
    inks, alphas = [], []
    for b in range(points.shape[0]):
        bent = _unstraighten(pts[b])
        shapes, groups = [], []
        for s in range(points.shape[1]):
            shapes.append(
                pydiffvg.Path(
                    num_control_points=torch.full((k,), 2, dtype=torch.int32),
                    points=bent[s].contiguous(),
                    stroke_width=wid[b, s],
                    is_closed=False,
                )
            )
            groups.append(
                pydiffvg.ShapeGroup(
                    shape_ids=torch.tensor([s], dtype=torch.int32), fill_color=None, stroke_color=col[b, s]
                )
            )
        args = pydiffvg.RenderFunction.serialize_scene(W, H, shapes, groups)
        over_black = render_fn(W, H, samples, samples, seed, black, *args)  # RGB: premultiplied ink
        alone = render_fn(W, H, samples, samples, seed, None, *args)  # alpha: the average coverage x opacity
        inks.append(over_black[..., :3].permute(2, 0, 1))
        alphas.append(alone[..., 3])
    ink = torch.stack(inks).to(dev, dt)
    alpha = torch.stack(alphas).to(dev, dt)
    if background is None:
        return ink / alpha.clamp_min(1e-8)[:, None], alpha
    bg = _bg(background, dev, dt)[None, :, None, None]
    return ink + bg * (1 - alpha[:, None]), alpha


# ---------------------------------------------------------------------------------------------
# public calls
# ---------------------------------------------------------------------------------------------
def _bg(background, device, dtype) -> torch.Tensor:
    try:
        bg = torch.as_tensor(background, dtype=dtype, device=device).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise StrokeError(f"background must be a grey value or an RGB triple in 0..1; got {background!r}") from None
    if bg.numel() == 1:
        bg = bg.expand(3)
    if bg.numel() == 4:  # an RGBA background: only RGB matters for an opaque canvas
        bg = bg[:3]
    if bg.numel() != 3:
        raise StrokeError(f"background must be a grey value or an RGB triple in 0..1; got {background!r}")
    return bg


def _check_inputs(points, widths, colors, background):
    """Refuse what would render as garbage or crash deep inside: non-finite strokes or background."""
    if background is not None:
        bg = _bg(background, points.device, points.dtype).detach()
        if not bool((torch.isfinite(bg) & (bg >= 0) & (bg <= 1)).all()):
            raise StrokeError(f"background must be finite values in 0..1 (grey or RGB); got {background!r}")
    for name, t in (("points", points), ("widths", widths), ("colors", colors)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise StrokeError(f"{name} must be a floating-point tensor; got {type(t).__name__}")
    ok = (
        torch.isfinite(points.detach()).all()
        & torch.isfinite(widths.detach()).all()
        & torch.isfinite(colors.detach()).all()
    )
    if not bool(ok):  # one check (one device sync) for all three
        bad = [
            n
            for n, t in (("points", points), ("widths", widths), ("colors", colors))
            if not bool(torch.isfinite(t.detach()).all())
        ]
        raise StrokeError(
            f"cannot render: the stroke {' and '.join(bad)} contain NaN or infinity (the sketch "
            "is broken: an optimiser diverged, or the tensors were changed in place). "
            "Re-initialise the strokes or load the sketch again."
        )


_BACKENDS = {"torch": _rasterize_tiled, "dense": _rasterize_dense, "diffvg": _rasterize_diffvg}


def rasterize(
    points: torch.Tensor,
    widths: torch.Tensor,
    colors: torch.Tensor,
    height: int,
    width: int,
    background: Background = (1.0, 1.0, 1.0),
    backend: str = "torch",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Render raw stroke tensors; differentiable w.r.t. ``points``, ``widths`` and ``colors``.

    ``points`` [B, S, 1+3k, 2] pixels, ``widths`` [B, S] half-widths, ``colors`` [B, S, 4] straight
    RGBA. Returns ``(image [B, 3, H, W], alpha [B, H, W])``; ``image`` is composited over
    ``background`` (white by default), or is the straight ink colour when ``background`` is None.
    Non-finite points, widths or colours and a non-finite background raise `StrokeError` (one check,
    cheap next to the rendering); shapes are not checked here: this is the optimiser's hot path (use
    `render` for fully checked input).
    """
    if backend == "auto":
        backend = "torch"
    try:
        fn = _BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown raster backend {backend!r}; choose one of {sorted(_BACKENDS)}") from None
    if backend == "diffvg" and not diffvg_available():
        from ..settings import SettingsError

        raise SettingsError(diffvg_missing_message())
    _check_inputs(points, widths, colors, background)
    return fn(points, widths, colors, int(height), int(width), background)


def render(
    strokes: Strokes,
    size: Optional[Tuple[int, int]] = None,
    background: Background = (1.0, 1.0, 1.0),
    width_scale: float = 1.0,
    color: Optional[Sequence[float]] = None,
    backend: str = "auto",
) -> Render:
    """Render every candidate of ``strokes``; ``size`` (H, W) rescales the drawing to another canvas.

    ``width_scale`` multiplies every stroke's width; ``color`` (RGB or RGBA) overrides stroke colours.
    """
    if not isinstance(strokes, Strokes):
        raise StrokeError(f"render() needs a Strokes value; got {type(strokes).__name__}")
    if not (isinstance(width_scale, (int, float)) and math.isfinite(width_scale) and width_scale > 0):
        raise StrokeError(f"width_scale must be a positive number; got {width_scale}")
    h, w = strokes.canvas
    if size is not None:
        try:
            h, w = int(size[0]), int(size[1])
        except (TypeError, ValueError, IndexError, OverflowError):
            raise StrokeError(f"render size must be (height, width) in pixels; got {size!r}") from None
        if h <= 0 or w <= 0:
            raise StrokeError(f"render size must be positive (height, width); got {size}")
    if strokes.num_candidates * h * w > MAX_RENDER_PIXELS:
        raise StrokeError(
            f"cannot render {strokes.num_candidates} x {h} x {w} pixels: over the limit of "
            f"{MAX_RENDER_PIXELS} pixels in all (clipasso.render.raster.MAX_RENDER_PIXELS); render a "
            "smaller size or fewer candidates at a time"
        )
    if (h, w) != strokes.canvas:
        strokes = strokes.scaled(h, w)
    colors = strokes.colors
    if color is not None:
        c = torch.as_tensor(list(color), dtype=colors.dtype, device=colors.device)
        if c.numel() == 3:
            c = torch.cat([c, colors.new_ones(1)])
        if c.numel() != 4 or not bool(((c >= 0) & (c <= 1)).all()):  # NaN fails too
            raise StrokeError(f"color must be RGB or RGBA in 0..1; got {color!r}")
        colors = c.expand_as(colors)
    if backend == "auto":
        backend = "torch"
    image, alpha = rasterize(
        strokes.points, strokes.widths * width_scale, colors, strokes.height, strokes.width, background, backend
    )
    return Render(image, alpha)
