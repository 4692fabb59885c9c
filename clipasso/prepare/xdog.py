"""XDoG ink map: where a pen would put ink (contours and dark regions).

CLIPasso keeps saliency only on "ink" pixels of an XDoG (eXtended Difference of Gaussians)
map before sampling stroke starts. The steps and numbers are the original's:

1. grey = 0.2125 R + 0.7154 G + 0.0721 B
2. D = G_sigma(grey) - gamma * G_{k sigma}(grey), sigma = 0.8, k = 10, gamma = 0.98
3. soft threshold, in the original's (inverted) form: 1 where D < eps, else 1 + tanh(phi * D),
   eps = -0.1, phi = 200
4. min-max normalise, Otsu threshold; pixels BELOW the threshold are ink.

Two deliberate differences from the released code:
- it runs on the image in 0..1 (the original fed the CLIP-normalised tensor; the result barely
  changes, see the spec section 6.2), and
- the returned convention is 1 = ink/edge, 0 = paper (the original returned 0 for ink).
Pure torch, any image size, no SciPy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .images import ImageError, as_rgb

GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)
XDOG_DEFAULTS = dict(gamma=0.98, phi=200.0, eps=-0.1, sigma=0.8, k=10.0)


def image_chw(image) -> torch.Tensor:
    """``[3, H, W]`` float 0..1 on the CPU. A ``[3, H, W]`` tensor is taken as channels-first as is
    (`as_rgb` would guess HWC for tiny images such as 3x1x1); anything else goes through `as_rgb`."""
    if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 3 and image.is_floating_point():
        t = image.detach().float().cpu()
        if t.shape[1] == 0 or t.shape[2] == 0:
            raise ImageError(f"the image is empty ({t.shape[1]}x{t.shape[2]} pixels)")
        if not bool(torch.isfinite(t).all()):
            raise ImageError("the image contains NaN or infinite values; check what produced it")
        if float(t.min()) < -1e-3 or float(t.max()) > 1 + 1e-3:
            raise ImageError(f"image values must lie in 0..1; got {float(t.min()):.3g}..{float(t.max()):.3g}")
        return t.clamp(0, 1)
    return as_rgb(image).float().cpu()


def gaussian_blur(grey: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of [H, W] with edge-replicating borders (kernel radius truncate*sigma)."""
    if sigma <= 0:
        return grey.clone()
    radius = max(1, int(truncate * sigma + 0.5))
    xs = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (xs / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(grey.dtype)
    x = grey[None, None]
    x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x[0, 0]


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of a set of values (the cut that maximises between-class variance).

    Histogram over [min, max] with ``bins`` bins; returns the centre of the best bin, so that
    ``values > threshold`` is the upper class (the same convention as scikit-image).
    """
    v = values.reshape(-1).double()
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 0:
        return lo
    hist = torch.histc(v, bins=bins, min=lo, max=hi)
    width = (hi - lo) / bins
    centres = lo + width * (torch.arange(bins, dtype=torch.float64) + 0.5)
    w0 = hist.cumsum(0)  # weight of the class at or below each bin
    w1 = hist.sum() - w0
    m0 = (hist * centres).cumsum(0) / w0.clamp(min=1e-12)
    m1 = ((hist * centres).sum() - (hist * centres).cumsum(0)) / w1.clamp(min=1e-12)
    between = w0 * w1 * (m0 - m1) ** 2
    between[-1] = -1  # cutting after the last bin leaves the upper class empty
    return float(centres[int(torch.argmax(between))])


def xdog_response(
    image, gamma: float = 0.98, phi: float = 200.0, eps: float = -0.1, sigma: float = 0.8, k: float = 10.0
) -> torch.Tensor:
    """The soft XDoG value [H, W] in 0..1 (low = ink) before binarisation, original convention."""
    for name, val in (("gamma", gamma), ("phi", phi), ("eps", eps), ("sigma", sigma), ("k", k)):
        if not (isinstance(val, (int, float)) and math.isfinite(val)):
            raise ValueError(f"XDoG parameter {name} must be a finite number; got {val!r}")
    if sigma <= 0 or k <= 0:
        raise ValueError(f"XDoG sigma and k must be positive (defaults 0.8 and 10); got sigma={sigma}, k={k}")
    rgb = image_chw(image)
    w = torch.tensor(GREY_WEIGHTS, dtype=rgb.dtype).view(3, 1, 1)
    grey = (rgb * w).sum(0)
    d = gaussian_blur(grey, sigma) - gamma * gaussian_blur(grey, sigma * k)
    soft = torch.where(d < eps, torch.ones_like(d), 1.0 + torch.tanh(phi * d))
    lo, hi = float(soft.min()), float(soft.max())
    return (soft - lo) / (hi - lo) if hi > lo else torch.ones_like(soft)


def xdog_edges(
    image, gamma: float = 0.98, phi: float = 200.0, eps: float = -0.1, sigma: float = 0.8, k: float = 10.0
) -> torch.Tensor:
    """Binary ink map [H, W] float32: 1 = ink/edge, 0 = paper. ``image`` is anything `as_rgb` takes.

    A flat image (all white, all one colour) has no ink: the map is all zeros.
    """
    soft = xdog_response(image, gamma=gamma, phi=phi, eps=eps, sigma=sigma, k=k)
    if float(soft.max() - soft.min()) <= 0:
        return torch.zeros_like(soft)
    thr = otsu_threshold(soft)
    return (soft < thr).float()


__all__ = ["xdog_edges", "xdog_response", "otsu_threshold", "gaussian_blur", "XDOG_DEFAULTS", "GREY_WEIGHTS"]
