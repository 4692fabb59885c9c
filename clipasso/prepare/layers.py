"""Scene layers: a picture and its object matte -> the foreground and background targets.

Scene mode (``scene=True``, `clipasso.scene`) sketches a whole photo in two layers, as CLIPascene
(Vinker et al., ICCV 2023) does:

- foreground: the salient object on white, exactly what background removal makes of the picture;
- background: the picture with the object's hole filled by inpainting, so that background strokes
  follow the scene behind the object instead of tracing the object a second time.

The hole is the matte (cut at 0.5) grown by `hole_margin` pixels: a matte's edge is soft and the
object's halo would otherwise be copied into the fill. The fill is scikit-image's biharmonic
inpainting (`skimage.restoration.inpaint_biharmonic`), which rembg already installs, so scene mode
adds no dependency (OpenCV's ``cv2.inpaint`` would add opencv, whose headless and GUI wheels clash
in ComfyUI installs). The biharmonic fill is smooth, so it is solved at most `INPAINT_SIDE` pixels a
side and the filled hole is upsampled into the full-resolution picture (0.4 s at 224 px on 2 CPU
cores; solving at 448 px takes 3 to 4.5 s for the same look).

A picture whose matte covers less than `MIN_LAYER_SHARE` of it has no salient object: it is one
background layer (the picture itself); one whose matte covers all but that share is one foreground
layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ClipassoError

LAYER_NAMES = ("background", "foreground")  # drawing order: the background first
MIN_LAYER_SHARE = 0.005  # a layer needs at least 0.5 % of the picture
INPAINT_SIDE = 224  # the fill is solved at most this many pixels a side, then upsampled
HOLE_MARGIN = 0.015  # the hole grows by this share of the picture's long side (3 px at 224)


class LayerError(ClipassoError, ValueError):
    """A picture or matte that cannot be split into layers; the message says what to give instead."""


@dataclass(frozen=True)
class SceneLayers:
    """The two targets of a scene sketch and the regions their strokes start in.

    ``picture`` [3,H,W]: the input as it is (the joint pass's target). ``foreground`` [3,H,W]: the object
    on white (None without an object). ``background`` [3,H,W]: the picture with the object's hole
    inpainted (None when the object fills the picture). ``mask`` [H,W]: 1 = object (None without one).
    ``hole`` [H,W]: the inpainted pixels (the mask grown by the margin; zeros without an object).
    """

    picture: torch.Tensor
    foreground: Optional[torch.Tensor]
    background: Optional[torch.Tensor]
    mask: Optional[torch.Tensor]
    hole: torch.Tensor

    @property
    def names(self) -> Tuple[str, ...]:
        """The layers present, in drawing order."""
        return tuple(n for n in LAYER_NAMES if self.target(n) is not None)

    def target(self, name: str) -> Optional[torch.Tensor]:
        if name not in LAYER_NAMES:
            raise LayerError(f"unknown layer {name!r}; the layers are {', '.join(LAYER_NAMES)}")
        return self.background if name == "background" else self.foreground

    def region(self, name: str) -> torch.Tensor:
        """[H,W] 1 where the layer's strokes may start: the object for the foreground, everything outside
        the hole for the background."""
        if self.target(name) is None:
            raise LayerError(f"this picture has no {name} layer; its layers are {', '.join(self.names)}")
        if name == "foreground":
            return self.mask
        return 1.0 - self.hole


def _picture(picture) -> torch.Tensor:
    from .images import as_rgb

    if isinstance(picture, torch.Tensor) and picture.ndim == 3 and picture.shape[0] == 3:
        t = picture.detach().float().cpu()
    else:
        t = as_rgb(picture).float().cpu()
    if not bool(torch.isfinite(t).all()):
        raise LayerError("the picture contains NaN or infinite values; check the node or file that made it")
    if float(t.min()) < -1e-3 or float(t.max()) > 1 + 1e-3:
        raise LayerError(f"the picture must be RGB in 0..1; got values {float(t.min()):.3g}..{float(t.max()):.3g}")
    return t.clamp(0, 1)


def _matte(mask, size: Tuple[int, int]) -> Optional[torch.Tensor]:
    if mask is None:
        return None
    m = mask.detach() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    m = m.float().cpu()
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise LayerError(f"the mask must be one 2-D matte [H, W] (1 = object); got shape {tuple(m.shape)}")
    if tuple(m.shape) != tuple(size):
        raise LayerError(
            f"the mask is {m.shape[0]}x{m.shape[1]} but the picture is {size[0]}x{size[1]}; "
            "give the matte of this picture at its size"
        )
    if not bool(torch.isfinite(m).all()) or float(m.min()) < 0 or float(m.max()) > 1:
        raise LayerError("the mask must hold values in 0..1 (1 = object, 0 = background)")
    return (m >= 0.5).float()


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """A binary [H,W] mask grown by ``pixels`` (a disc-shaped neighbourhood, approximated by a square)."""
    if pixels <= 0:
        return mask
    k = 2 * int(pixels) + 1
    return F.max_pool2d(mask[None, None], k, stride=1, padding=int(pixels))[0, 0]


def hole_margin(height: int, width: int) -> int:
    """How many pixels the object's matte grows by before inpainting (at least 2)."""
    return max(2, round(HOLE_MARGIN * max(height, width)))


def inpaint(picture, hole, max_side: int = INPAINT_SIDE) -> torch.Tensor:
    """``picture`` [3,H,W] 0..1 with the pixels where ``hole`` [H,W] is 1 filled by biharmonic inpainting
    (scikit-image), solved at most ``max_side`` pixels a side; the pixels outside the hole are kept as
    they are."""
    pic = _picture(picture)
    h, w = pic.shape[-2:]
    holes = _matte(hole, (h, w))
    if holes is None or not bool(holes.any()):
        return pic.clone()
    if bool(holes.all()):
        raise LayerError("the hole covers the whole picture: there is nothing to fill it from")
    try:
        from skimage.restoration import inpaint_biharmonic
    except ImportError as exc:  # pragma: no cover - rembg installs scikit-image
        raise LayerError(
            "scene layers need scikit-image for inpainting (pip install scikit-image; rembg installs it)"
        ) from exc
    scale = min(1.0, max_side / max(h, w))
    small_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = pic if scale == 1.0 else F.interpolate(pic[None], size=small_hw, mode="area")[0]
    # the hole at the small size: every small pixel that touches the hole is filled
    small_hole = holes if scale == 1.0 else F.adaptive_max_pool2d(holes[None, None], small_hw)[0, 0]
    if bool(small_hole.all()):
        raise LayerError("the hole covers the whole picture: there is nothing to fill it from")
    filled = inpaint_biharmonic(
        small.permute(1, 2, 0).numpy().astype(np.float64), small_hole.numpy().astype(bool), channel_axis=-1
    )
    fill = torch.from_numpy(np.ascontiguousarray(filled)).permute(2, 0, 1).float().clamp(0, 1)
    if scale != 1.0:
        fill = F.interpolate(fill[None], size=(h, w), mode="bilinear", align_corners=False)[0].clamp(0, 1)
    return torch.where(holes.bool()[None], fill, pic)


def split_layers(picture, mask, *, margin: Optional[int] = None, min_share: float = MIN_LAYER_SHARE) -> SceneLayers:
    """Split ``picture`` (a [3,H,W] 0..1 tensor or anything `as_rgb` takes) by its object ``mask`` ([H,W] in
    0..1, 1 = object, cut at 0.5; None: no object) into the foreground and background targets (see the
    module docstring). ``margin``: pixels the hole grows by (default `hole_margin`)."""
    pic = _picture(picture)
    h, w = pic.shape[-2:]
    m = _matte(mask, (h, w))
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not 0 <= min_share < 0.5:
        raise LayerError(f"min_share must be a share of the picture in [0, 0.5); got {min_share!r}")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int) or margin < 0):
        raise LayerError(f"margin must be a whole number of pixels >= 0; got {margin!r}")
    share = 0.0 if m is None else float(m.mean())
    no_hole = torch.zeros(h, w)
    if m is None or share < max(min_share, 1e-12):  # no salient object: the picture is its background
        return SceneLayers(pic, None, pic.clone(), None, no_hole)
    if share > 1.0 - min_share:  # the object is the picture
        return SceneLayers(pic, pic * m + (1 - m), None, m, torch.ones(h, w))
    hole = grow(m, hole_margin(h, w) if margin is None else margin)
    if float(hole.mean()) > 1.0 - min_share:  # the grown hole leaves no background to fill it from
        return SceneLayers(pic, pic * m + (1 - m), None, m, torch.ones(h, w))
    foreground = pic * m + (1 - m)
    background = inpaint(pic, hole)
    return SceneLayers(pic, foreground, background, m, hole)


__all__ = [
    "SceneLayers",
    "split_layers",
    "inpaint",
    "grow",
    "hole_margin",
    "LayerError",
    "LAYER_NAMES",
    "MIN_LAYER_SHARE",
    "INPAINT_SIDE",
]
