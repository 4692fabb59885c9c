"""Motion between two frames and the strokes moved by it.

The dense optical flow comes from scikit-image (``skimage.registration``: TV-L1, or iterative Lucas-Kanade,
which is faster and a little less exact), on the two frames as the loss sees them (the square canvas, grey
levels). scikit-image is already a dependency (rembg needs it; scene mode's inpainting uses it).

`estimate_flow(previous, current)` gives ``[2,H,W]`` (dx, dy) in canvas pixels such that the content at
(x, y) of ``previous`` is at (x + dx, y + dy) of ``current``; `move_points` samples it at every control
point (bilinear; a point outside the canvas takes the flow of the nearest border pixel).
"""

from __future__ import annotations

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


def sample_flow(flow: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The flow ``[2,H,W]`` at ``points`` ``[..., 2]`` (x, y canvas pixels; pixel centres at +0.5) -> ``[..., 2]``."""
    h, w = flow.shape[-2:]
    shape = points.shape
    p = points.reshape(1, -1, 1, 2).float().to(flow.device)
    gx = (p[..., 0] / w) * 2 - 1  # align_corners=False: pixel i's centre is at x = i + 0.5
    gy = (p[..., 1] / h) * 2 - 1
    grid = torch.stack([gx, gy], -1)
    out = F.grid_sample(flow.unsqueeze(0).float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, :, 0].t().reshape(shape).to(points.device, points.dtype)


def move_points(strokes: Strokes, flow: torch.Tensor) -> Strokes:
    """``strokes`` with every control point moved by ``flow`` (`estimate_flow`, on the strokes' canvas)."""
    if tuple(flow.shape[-2:]) != tuple(strokes.canvas):
        raise VideoError(
            f"the flow is {flow.shape[-2]}x{flow.shape[-1]} but the strokes' canvas is {strokes.height}x{strokes.width}"
        )
    pts = strokes.points.detach()
    return strokes.replace(points=pts + sample_flow(flow, pts))


__all__ = ["estimate_flow", "sample_flow", "move_points"]
