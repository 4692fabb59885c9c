"""Motion between two frames and the strokes moved by it.

The dense optical flow comes from scikit-image (``skimage.registration``: TV-L1, or iterative Lucas-Kanade,
which is faster and a little less exact), on the two frames as the loss sees them (the square canvas, grey
levels). scikit-image is already a dependency (rembg needs it; scene mode's inpainting uses it).

`estimate_flow(previous, current)` gives ``[2,H,W]`` (dx, dy) in canvas pixels such that the content at
(x, y) of ``previous`` is at (x + dx, y + dy) of ``current``; `move_points` samples it at every control
point (bilinear). A control point off the canvas (a Bezier handle often is, and a stroke leaving the
picture) has no flow of its own: it moves with the affine motion fitted to the whole flow field
(`affine_fit`, least squares weighted by the picture's texture, where flow is reliable), which is exact
for a pan, a zoom or a rotation of the camera; border clamping would freeze such points while the
curve they bend moves on.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import VideoError
from ..settings import FLOW_METHODS
from ..strokes import Strokes


def _grey(picture: torch.Tensor):
    if picture.ndim != 3 or picture.shape[0] != 3:
        raise VideoError(f"a frame for the optical flow must be [3,H,W]; got {tuple(picture.shape)}")
    p = picture.detach().float().cpu().clamp(0, 1)
    grey = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
    return grey.numpy().astype("float32")


def estimate_flow(previous: torch.Tensor, current: torch.Tensor, method: str = "tvl1") -> torch.Tensor:
    """``[2,H,W]`` float32 (dx, dy): where each pixel of ``previous`` ([3,H,W], 0..1) went in ``current``.
    ``method``: "tvl1", "ilk" or "none" (zero flow)."""
    if method not in FLOW_METHODS:
        raise VideoError(f"flow must be one of {', '.join(FLOW_METHODS)}; got {method!r}")
    if tuple(previous.shape) != tuple(current.shape):
        raise VideoError(
            f"two frames of different sizes ({tuple(previous.shape)} and {tuple(current.shape)}) have no flow; "
            "every frame of a clip must have the same size"
        )
    h, w = previous.shape[-2:]
    if method == "none":
        return torch.zeros(2, h, w)
    from skimage.registration import optical_flow_ilk, optical_flow_tvl1

    a, b = _grey(previous), _grey(current)
    solver = optical_flow_tvl1 if method == "tvl1" else optical_flow_ilk
    # skimage: reference(r, c) ~ moving(r + v, c + u), so content at (c, r) of the reference is at (c+u, r+v)
    v, u = solver(a, b)
    flow = torch.from_numpy(__import__("numpy").stack([u, v])).float()
    return torch.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)


def affine_fit(flow: torch.Tensor, weight: Optional[torch.Tensor] = None, step: int = 2) -> torch.Tensor:
    """[2,3] the affine motion ``d(x, y) = A @ (x, y, 1)`` closest to ``flow`` ``[2,H,W]`` (least squares
    over every ``step``-th pixel centre, weighted by ``weight`` [H,W] when given)."""
    h, w = flow.shape[-2:]
    ys = torch.arange(0, h, step, dtype=torch.float64) + 0.5
    xs = torch.arange(0, w, step, dtype=torch.float64) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    design = torch.stack([gx.flatten(), gy.flatten(), torch.ones(gx.numel(), dtype=torch.float64)], 1)
    target = flow[:, ::step, ::step].reshape(2, -1).t().double()
    if weight is not None:
        wt = weight[::step, ::step].flatten().double().clamp_min(0)
        if float(wt.sum()) > 0:
            root = wt.sqrt()[:, None]
            design, target = design * root, target * root
    solution = torch.linalg.lstsq(design, target).solution  # [3, 2]
    return solution.t().float()


def texture(picture: torch.Tensor) -> torch.Tensor:
    """[H,W] gradient magnitude of a [3,H,W] picture's grey levels: where optical flow can be trusted."""
    g = picture.detach().float().cpu().mean(0)
    gx = torch.zeros_like(g)
    gy = torch.zeros_like(g)
    gx[:, 1:-1] = (g[:, 2:] - g[:, :-2]) / 2
    gy[1:-1] = (g[2:] - g[:-2]) / 2
    return (gx * gx + gy * gy).sqrt()


def sample_flow(flow: torch.Tensor, points: torch.Tensor, affine: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The flow ``[2,H,W]`` at ``points`` ``[..., 2]`` (x, y canvas pixels; pixel centres at +0.5) -> ``[..., 2]``.
    ``affine`` ([2,3], `affine_fit`): the motion of the points off the canvas (else the nearest border
    pixel's flow)."""
    h, w = flow.shape[-2:]
    shape = points.shape
    p = points.reshape(1, -1, 1, 2).float().to(flow.device)
    gx = (p[..., 0] / w) * 2 - 1  # align_corners=False: pixel i's centre is at x = i + 0.5
    gy = (p[..., 1] / h) * 2 - 1
    grid = torch.stack([gx, gy], -1)
    out = F.grid_sample(flow.unsqueeze(0).float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    moved = out[0, :, :, 0].t()  # [N, 2]
    if affine is not None:
        q = p[0, :, 0]  # [N, 2]
        off = (q[:, 0] < 0) | (q[:, 0] > w) | (q[:, 1] < 0) | (q[:, 1] > h)
        if bool(off.any()):
            a = affine.to(q)
            fitted = q @ a[:, :2].t() + a[:, 2]
            moved = torch.where(off[:, None], fitted, moved)
    return moved.reshape(shape).to(points.device, points.dtype)


def move_points(strokes: Strokes, flow: torch.Tensor, reference: Optional[torch.Tensor] = None) -> Strokes:
    """``strokes`` with every control point moved by ``flow`` (`estimate_flow`, on the strokes' canvas); the
    points off the canvas by the affine motion fitted to the flow (weighted by the texture of
    ``reference``, the [3,H,W] frame the flow starts from, when given)."""
    if tuple(flow.shape[-2:]) != tuple(strokes.canvas):
        raise VideoError(
            f"the flow is {flow.shape[-2]}x{flow.shape[-1]} but the strokes' canvas is {strokes.height}x{strokes.width}"
        )
    pts = strokes.points.detach()
    affine = affine_fit(flow, texture(reference) if reference is not None else None)
    return strokes.replace(points=pts + sample_flow(flow, pts, affine))


__all__ = ["estimate_flow", "sample_flow", "move_points", "affine_fit", "texture"]
