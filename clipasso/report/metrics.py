"""Weights-free sketch quality: how well a sketch's ink lies on its target's edges.

All maps are compared at 224 x 224 (the CLIPasso canvas), whatever size they come in:

- ``precision``: share of the sketch's ink pixels within ``tolerance`` px (Euclidean) of an edge
  pixel of the target;
- ``recall``: share of the target's edge pixels within ``tolerance`` px of sketch ink;
- ``f``: their harmonic mean (the boundary F-measure of contour detection, BSDS style, with
  a distance tolerance instead of a one-to-one matching);
- ``coverage``: share of the object mask within ``cover_radius`` px of ink (how much of the
  object the strokes span), and ``on_object``: share of ink within ``tolerance`` px of the mask.

Empty sets follow the usual conventions: no ink gives precision 0 (nothing drawn is right), no
edges gives recall 0, and F is 0 unless both precision and recall are positive; a blank sketch of
a blank target scores 1 on both. Pure torch; `edge_map` with ``method="canny"`` uses
scikit-image.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from ..errors import ClipassoError

METRIC_SIZE = 224
DEFAULT_TOLERANCE = 3.0
DEFAULT_COVER_RADIUS = 8.0


class MetricError(ClipassoError, ValueError):
    """Maps that cannot be compared."""


def _as_bool_maps(x, name: str) -> torch.Tensor:
    """[H,W] or [B,H,W] -> bool [B,H,W]."""
    t = torch.as_tensor(x)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise MetricError(f"{name} must be [H,W] or [B,H,W]; got {tuple(t.shape)}")
    return t.bool() if t.dtype == torch.bool else t > 0.5


def _resize_maps(m: torch.Tensor, size: int) -> torch.Tensor:
    if tuple(m.shape[-2:]) == (size, size):
        return m
    x = F.interpolate(m.float().unsqueeze(1), size=(size, size), mode="area" if m.shape[-1] > size else "nearest")
    return x[:, 0] > 0.25  # a thin line stays visible after area shrinking


def disk(radius: float) -> torch.Tensor:
    """Binary disk kernel: offsets with Euclidean length <= radius."""
    r = int(math.floor(radius))
    ys, xs = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    return ((xs * xs + ys * ys) <= radius * radius + 1e-9).float()


def dilate(maps: torch.Tensor, radius: float) -> torch.Tensor:
    """Bool [B,H,W]: pixels within ``radius`` (Euclidean) of a True pixel."""
    m = _as_bool_maps(maps, "maps")
    if radius <= 0:
        return m.clone()
    k = disk(radius)
    r = (k.shape[0] - 1) // 2
    hit = F.conv2d(m.float().unsqueeze(1), k.view(1, 1, *k.shape), padding=r)[:, 0]
    return hit > 0.5


def erode(maps: torch.Tensor) -> torch.Tensor:
    """Bool [B,H,W] 3x3 erosion; outside the canvas counts as inside (the canvas border is no edge)."""
    m = _as_bool_maps(maps, "maps")
    return -F.max_pool2d(-m.float().unsqueeze(1), 3, stride=1, padding=1)[:, 0] > 0.5


def boundary(maps: torch.Tensor) -> torch.Tensor:
    """Bool [B,H,W]: the inner boundary of each region (True pixels with a False 8-neighbour)."""
    m = _as_bool_maps(maps, "maps")
    return m & ~erode(m)


def ink_map(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Bool [B,H,W] ink of renders on white: ``1 - grey > threshold``. Takes [3,H,W] or [B,3,H,W]."""
    from ..prepare.xdog import GREY_WEIGHTS

    x = torch.as_tensor(images).float()
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise MetricError(f"images must be RGB [3,H,W] or [B,3,H,W]; got {tuple(x.shape)}")
    w = torch.tensor(GREY_WEIGHTS, dtype=x.dtype).view(1, 3, 1, 1)
    return (1.0 - (x * w).sum(1)) > threshold


def edge_map(
    image: torch.Tensor, mask: Optional[torch.Tensor] = None, method: str = "canny", sigma: float = 2.0
) -> torch.Tensor:
    """Bool [H,W] edges of ``image`` ([3,H,W] 0..1 on white), joined with the mask's outline.

    method ``canny``: scikit-image's Canny on the grey image (``sigma`` px); ``xdog``: the outline
    of CLIPasso's XDoG ink map (filled dark regions become their contour); ``mask``: the mask's
    outline only (silhouettes).
    """
    from ..prepare.xdog import GREY_WEIGHTS, image_chw, xdog_edges

    img = image_chw(image)
    if method == "canny":
        try:
            from skimage.feature import canny
        except ImportError as exc:  # pragma: no cover - scikit-image is a test/bench dependency
            raise MetricError(
                "edge_map(method='canny') needs scikit-image (pip install scikit-image); or use method='xdog'"
            ) from exc
        grey = (img * torch.tensor(GREY_WEIGHTS).view(3, 1, 1)).sum(0).numpy()
        edges = torch.from_numpy(canny(grey, sigma=sigma))
    elif method == "xdog":
        edges = boundary(xdog_edges(img))[0]
    elif method == "mask":
        if mask is None:
            raise MetricError("edge_map(method='mask') needs the object mask")
        edges = torch.zeros(img.shape[-2:], dtype=torch.bool)
    else:
        raise MetricError(f"unknown edge method {method!r}; use canny, xdog or mask")
    if mask is not None:
        m = _as_bool_maps(mask, "mask")[0]
        if tuple(m.shape) != tuple(edges.shape):
            raise MetricError(f"mask {tuple(m.shape)} and image {tuple(edges.shape)} differ in size")
        edges = edges | boundary(m)[0]
    return edges


def fscore(
    ink, edges, tolerance: float = DEFAULT_TOLERANCE, size: Optional[int] = METRIC_SIZE
) -> Dict[str, torch.Tensor]:
    """Per map: ``precision``, ``recall``, ``f`` of ``ink`` [B,H,W] against ``edges`` [H,W] or [B,H,W].

    Both are brought to ``size`` x ``size`` first (None: compared as given).
    """
    ink = _as_bool_maps(ink, "ink")
    edges = _as_bool_maps(edges, "edges")
    if size is not None:
        ink, edges = _resize_maps(ink, size), _resize_maps(edges, size)
    if tuple(ink.shape[-2:]) != tuple(edges.shape[-2:]):
        raise MetricError(f"ink {tuple(ink.shape[-2:])} and edges {tuple(edges.shape[-2:])} differ in size")
    edges = edges.expand_as(ink) if edges.shape[0] == 1 else edges
    n_ink = ink.flatten(1).sum(1).float()
    n_edge = edges.flatten(1).sum(1).float()
    near_edge = dilate(edges, tolerance)
    near_ink = dilate(ink, tolerance)
    p = torch.where(n_ink > 0, (ink & near_edge).flatten(1).sum(1) / n_ink.clamp(min=1), torch.zeros_like(n_ink))
    r = torch.where(n_edge > 0, (edges & near_ink).flatten(1).sum(1) / n_edge.clamp(min=1), torch.zeros_like(n_ink))
    f = torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-12), torch.zeros_like(p))
    both_empty = (n_ink == 0) & (n_edge == 0)
    ones = torch.ones_like(p)
    return {
        "precision": torch.where(both_empty, ones, p),
        "recall": torch.where(both_empty, ones, r),
        "f": torch.where(both_empty, ones, f),
    }


def mask_coverage(ink, mask, radius: float = DEFAULT_COVER_RADIUS, size: Optional[int] = METRIC_SIZE) -> torch.Tensor:
    """Per map: share of the object mask within ``radius`` px of ink (0 for an empty mask)."""
    ink = _as_bool_maps(ink, "ink")
    m = _as_bool_maps(mask, "mask")
    if size is not None:
        ink, m = _resize_maps(ink, size), _resize_maps(m, size)
    m = m.expand_as(ink) if m.shape[0] == 1 else m
    n = m.flatten(1).sum(1).float()
    covered = (m & dilate(ink, radius)).flatten(1).sum(1).float()
    return torch.where(n > 0, covered / n.clamp(min=1), torch.zeros_like(n))


def sketch_fidelity(
    renders: torch.Tensor,
    target: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    edges: Optional[torch.Tensor] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    cover_radius: float = DEFAULT_COVER_RADIUS,
    edge_method: str = "canny",
) -> Dict[str, list]:
    """All scores for renders ``[B,3,H,W]`` (or one ``[3,H,W]``) of sketches of ``target`` [3,H,W].

    edges: a precomputed edge map (default `edge_map(target, mask, edge_method)`). Returns lists of
    floats, one per render: precision, recall, f, and with a mask coverage and on_object.
    """
    ink = ink_map(renders)
    if edges is None:
        edges = edge_map(target, mask, method=edge_method)
    out = {k: v.tolist() for k, v in fscore(ink, edges, tolerance).items()}
    if mask is not None:
        out["coverage"] = mask_coverage(ink, mask, cover_radius).tolist()
        m = _resize_maps(_as_bool_maps(mask, "mask"), METRIC_SIZE)
        ink224 = _resize_maps(ink, METRIC_SIZE)
        n = ink224.flatten(1).sum(1).float()
        on = (ink224 & dilate(m, tolerance)).flatten(1).sum(1).float()
        out["on_object"] = torch.where(n > 0, on / n.clamp(min=1), torch.zeros_like(n)).tolist()
    return out


__all__ = [
    "fscore",
    "mask_coverage",
    "sketch_fidelity",
    "edge_map",
    "ink_map",
    "boundary",
    "dilate",
    "erode",
    "disk",
    "MetricError",
    "METRIC_SIZE",
    "DEFAULT_TOLERANCE",
    "DEFAULT_COVER_RADIUS",
]
