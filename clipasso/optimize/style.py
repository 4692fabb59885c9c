"""Styled strokes: per-stroke width, opacity and colour, optimised within bounds, and a fixed pen.

CLIPasso draws every stroke as the same black 3 px line. Here the optimiser may also move

- the half-width of each stroke, kept in ``[min_width, max_width]`` (default 0.5..4 px, i.e. lines of
  1 to 8 px),
- the opacity of each stroke, kept in ``[min_opacity, 1]`` (default 0.05..1),
- the RGB colour of each stroke, kept in 0..1,

by projected gradient descent: Adam steps the raw values and they are clamped back into their
bounds after every step (a sigmoid reparametrisation would make the gradient vanish near the
bounds, where thin faint strokes end up). Colours can start from the picture: each stroke takes
the colour of the target under it (`colors_from_image`). A pen (`with_pen`) draws every stroke of
the output with one given width, as a plotter would.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import ClipassoError
from ..settings import OptimizerSettings, SettingsError, field_option
from ..strokes import Strokes, pen_half_width

WIDTH_RANGE = OptimizerSettings().width_range  # half-widths in canvas px: 1 to 8 px lines
MIN_OPACITY = OptimizerSettings().min_opacity


class StyleError(ClipassoError, ValueError):
    """A style setting that cannot work; the message says what to change."""


def with_pen(strokes: Strokes, pen_width: float) -> Strokes:
    """The same strokes drawn with one pen: every full line width ``pen_width`` canvas pixels."""
    msg = field_option("pen_width").problem("pen width", pen_width)  # the settings' own check of pen_width
    if msg:
        raise SettingsError(msg)
    if pen_width is None:
        return strokes
    return strokes.replace(widths=torch.full_like(strokes.widths, pen_half_width(float(pen_width))))


def _sample_points(points: torch.Tensor, per_segment: int) -> torch.Tensor:
    """Points along every stroke ``[B,S,N,2]`` (N = k * per_segment + 1) of cubic strokes ``[B,S,1+3k,2]``."""
    b, s, p, _ = points.shape
    k = (p - 1) // 3
    t = torch.linspace(0, 1, per_segment + 1, dtype=points.dtype, device=points.device)[:-1]
    u = 1 - t
    basis = torch.stack([u**3, 3 * u * u * t, 3 * u * t * t, t**3], -1)  # [n,4]
    idx = torch.arange(k, device=points.device)[:, None] * 3 + torch.arange(4, device=points.device)
    cub = points[:, :, idx]  # [B,S,k,4,2]
    along = torch.einsum("nc,bskcd->bsknd", basis, cub).reshape(b, s, k * per_segment, 2)
    return torch.cat([along, points[:, :, -1:]], 2)


@torch.no_grad()
def colors_from_image(
    strokes: Strokes, image: torch.Tensor, background: Sequence[float] = (1.0, 1.0, 1.0), per_segment: int = 16
) -> Strokes:
    """Each stroke coloured like the picture under it.

    ``image`` [3,H,W] 0..1 on the strokes' canvas (it is resized if its size differs). The colour is
    the mean of the picture sampled along the stroke, weighted by how far each sample is from the
    background colour, so a stroke on an outline takes the object's colour, not the paper's. A
    stroke lying on background only keeps its own colour. Opacity is kept.
    """
    if not isinstance(strokes, Strokes):
        raise StyleError(f"colors_from_image needs a Strokes value; got {type(strokes).__name__}")
    img = image if isinstance(image, torch.Tensor) else torch.as_tensor(image)
    if img.ndim != 3 or img.shape[0] != 3:
        raise StyleError(f"the picture to take colours from must be RGB [3,H,W]; got {tuple(img.shape)}")
    img = img.detach().float().to(strokes.device)
    if not bool(torch.isfinite(img).all()) or float(img.min()) < -1e-3 or float(img.max()) > 1 + 1e-3:
        raise StyleError("the picture to take colours from must hold finite RGB values in 0..1")
    h, w = strokes.canvas
    if tuple(img.shape[-2:]) != (h, w):
        img = F.interpolate(img[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    pts = _sample_points(strokes.points.float(), per_segment)  # [B,S,N,2]
    b, s, n, _ = pts.shape
    grid = torch.stack([pts[..., 0] / w * 2 - 1, pts[..., 1] / h * 2 - 1], -1).reshape(1, b * s, n, 2)
    samples = F.grid_sample(img[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    samples = samples[0].permute(1, 2, 0).reshape(b, s, n, 3)  # [B,S,N,3]
    bg = torch.as_tensor(list(background), dtype=samples.dtype, device=samples.device).reshape(-1)[:3]
    weight = (samples - bg).abs().amax(-1)  # [B,S,N] 0 on paper
    total = weight.sum(-1, keepdim=True)
    rgb = (samples * weight[..., None]).sum(2) / total.clamp_min(1e-6)
    own = strokes.colors[..., :3]
    rgb = torch.where(total > 1e-3, rgb, own).clamp(0, 1)
    return strokes.replace(colors=torch.cat([rgb, strokes.colors[..., 3:]], -1))


class StyleState:
    """The per-stroke width and colour tensors of one optimisation run (optimised or fixed).

    ``param_groups()`` gives Adam its groups for what is optimised; ``project()`` clamps those back
    into their bounds after a step; ``widths`` / ``colors()`` are what the rasterizer draws.
    """

    def __init__(
        self, widths: torch.Tensor, colors: torch.Tensor, settings: Optional[OptimizerSettings] = None, **overrides
    ):
        """``settings``: the optimiser's settings (None: the defaults; an `OptimizeConfig` is one), with
        ``overrides`` of its fields (optimize_width, optimize_opacity, optimize_color, width_range,
        min_opacity, width_lr, opacity_lr, color_lr); validated by the settings."""
        st = OptimizerSettings.of(settings, **overrides)
        self.width_range = tuple(float(v) for v in st.width_range)
        self.min_opacity = float(st.min_opacity)
        self.flags = (bool(st.optimize_width), bool(st.optimize_opacity), bool(st.optimize_color))
        self.lrs = (float(st.width_lr), float(st.opacity_lr), float(st.color_lr))
        self.widths = widths.detach().clone()
        self.rgb = colors[..., :3].detach().clone()
        self.alpha = colors[..., 3:].detach().clone()
        self.project()
        for t, on in zip((self.widths, self.alpha, self.rgb), self.flags):
            t.requires_grad_(on)

    @property
    def active(self) -> bool:
        return any(self.flags)

    def param_groups(self):
        tensors = (self.widths, self.alpha, self.rgb)
        return [{"params": [t], "lr": lr} for t, lr, on in zip(tensors, self.lrs, self.flags) if on]

    def colors(self) -> torch.Tensor:
        return torch.cat([self.rgb, self.alpha], -1)

    @torch.no_grad()
    def project(self) -> None:
        if self.flags[0]:
            self.widths.clamp_(*self.width_range)
        if self.flags[1]:
            self.alpha.clamp_(self.min_opacity, 1.0)
        if self.flags[2]:
            self.rgb.clamp_(0.0, 1.0)

    def snapshot(self):
        return self.widths.detach().clone(), self.colors().detach().clone()

    @torch.no_grad()
    def restore(self, widths: torch.Tensor, colors: torch.Tensor) -> None:
        self.widths.copy_(widths)
        self.rgb.copy_(colors[..., :3])
        self.alpha.copy_(colors[..., 3:])


__all__ = ["with_pen", "colors_from_image", "StyleState", "StyleError", "WIDTH_RANGE", "MIN_OPACITY"]
