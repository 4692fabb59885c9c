"""Turning whatever the user hands us into a clean RGB tensor, and back.

Every entry point (CLI, pipeline, ComfyUI nodes) goes through `as_rgb`, so bad input is
caught once, with one clear message: empty or NaN images, odd channel counts, huge images.
"""
from __future__ import annotations

import os
from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

MAX_PIXELS = 64_000_000  # 8000 x 8000; larger inputs are refused rather than silently eating RAM


class ImageError(ValueError):
    """An input image that cannot be used; the message says why and what to do."""


def _background_tensor(background, device, dtype) -> torch.Tensor:
    bg = torch.as_tensor(background, dtype=dtype, device=device).reshape(-1)
    if bg.numel() == 1:
        bg = bg.expand(3)
    if bg.numel() != 3:
        raise ImageError(f"background must be one grey value or an RGB triple in 0..1; got {background!r}")
    return bg.view(3, 1, 1)


def as_rgb(image, background: Union[float, Sequence[float]] = 1.0,
           max_pixels: int = MAX_PIXELS, layout: str = "auto") -> torch.Tensor:
    """Any image -> float32 ``[3, H, W]`` in 0..1 on the CPU (or the input tensor's device).

    Accepts a file path, a PIL image, a numpy array (HW, HWC; uint8 or float 0..1) or a torch
    tensor (HW, HWC, CHW, or a batch of one in BHWC/BCHW). Alpha is composited over
    ``background`` (white by default, as CLIPasso does); greyscale is expanded to RGB.
    ``layout`` ("auto", "chw" or "hwc") says where a 3-D tensor keeps its channels; "auto" reads
    ComfyUI's HWC unless only the first dimension looks like channels (say "chw" for tiny
    tensors such as [3, 1, 1], which "auto" cannot tell apart from a 3x1 grey image).
    """
    if layout not in ("auto", "chw", "hwc"):
        raise ImageError(f"layout must be 'auto', 'chw' or 'hwc'; got {layout!r}")
    if isinstance(image, (str, os.PathLike)):
        image = load_image_file(image)
    if hasattr(image, "mode") and hasattr(image, "convert"):  # PIL image
        pil = image
        if pil.mode in ("P", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
            pil = pil.convert("RGBA")
        elif pil.mode not in ("RGB", "RGBA", "L", "F", "I;16", "I"):
            pil = pil.convert("RGB")
        arr = np.asarray(pil)
        if pil.mode in ("I;16", "I"):
            arr = arr.astype(np.float32) / (65535.0 if arr.max() > 255 else 255.0)
        image = arr
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            t = torch.from_numpy(image.astype(np.float32) / 255.0)
        elif image.dtype == np.uint16:
            t = torch.from_numpy(image.astype(np.float32) / 65535.0)
        elif image.dtype == bool:
            t = torch.from_numpy(image.astype(np.float32))
        elif np.issubdtype(image.dtype, np.number):
            t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        else:
            raise ImageError(f"unsupported image array dtype {image.dtype}; use uint8 or float in 0..1")
        channels_last = True
    elif isinstance(image, torch.Tensor):
        t = image.detach()
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        elif not t.is_floating_point():
            t = t.float()
        else:
            t = t.float()
        channels_last = None
    else:
        raise ImageError(f"cannot read an image from {type(image).__name__}; give a file path, "
                         "a PIL image, a numpy array or a torch tensor")

    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ImageError(f"expected one image, got a batch of {t.shape[0]}; pass images one at a time")
        t = t[0]
    if t.ndim == 2:
        t = t.unsqueeze(-1)
        channels_last = True
    if t.ndim != 3:
        raise ImageError(f"an image needs 2 or 3 dimensions (H, W[, C]); got shape {tuple(image.shape)}")
    if layout != "auto" and channels_last is None:  # a 3-D tensor: the caller says where channels are
        channels_last = layout == "hwc"
    if channels_last is None:  # torch: HWC (ComfyUI) unless the first dim looks like channels
        channels_last = not (t.shape[0] in (1, 2, 3, 4) and t.shape[-1] not in (1, 2, 3, 4))
    if not channels_last:
        t = t.permute(1, 2, 0)
    h, w, c = t.shape
    if h == 0 or w == 0:
        raise ImageError(f"the image is empty ({h}x{w} pixels); give a picture of an object")
    if h * w > max_pixels:
        raise ImageError(f"the image is {w}x{h} = {h * w / 1e6:.0f} megapixels, above the limit of "
                         f"{max_pixels / 1e6:.0f}; downscale it first (sketching works at 224 px anyway)")
    if c not in (1, 2, 3, 4):
        raise ImageError(f"an image needs 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels; got {c}")
    if not bool(torch.isfinite(t).all()):
        raise ImageError("the image contains NaN or infinite values; check the node or file that produced it")
    if float(t.max()) > 1.0 + 1e-3 or float(t.min()) < -1e-3:
        if float(t.min()) >= 0 and float(t.max()) <= 255.0 + 1e-3:
            t = t / 255.0  # a float image in 0..255
        else:
            raise ImageError(f"image values must lie in 0..1 (or 0..255); got {float(t.min()):.3g}..{float(t.max()):.3g}")
    t = t.clamp(0, 1).permute(2, 0, 1).contiguous()  # C,H,W
    alpha = None
    if c in (2, 4):
        alpha = t[-1:]
        t = t[:-1]
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    if alpha is not None:
        bg = _background_tensor(background, t.device, t.dtype)
        t = t * alpha + bg * (1 - alpha)
    return t.contiguous()


def alpha_of(image) -> torch.Tensor | None:
    """The alpha channel ``[H, W]`` of an RGBA/LA input, or None when it has none."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image_file(image)
    if hasattr(image, "mode"):
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            return torch.from_numpy(np.asarray(image.convert("RGBA"))[..., 3].astype(np.float32) / 255.0)
        return None
    arr = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.asarray(image))
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):
        a = arr[..., -1].float()
        return a / 255.0 if a.max() > 1 else a
    return None


def load_image_file(path) -> "Image.Image":
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"image file not found: {path}")
    try:
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path} is not an image Pillow can read (PNG, JPEG, WebP, ...)") from exc
    except OSError as exc:
        raise ImageError(f"could not read {path}: {exc}") from exc
    if img.width * img.height > MAX_PIXELS:
        raise ImageError(f"{path} is {img.width}x{img.height}, above the {MAX_PIXELS / 1e6:.0f} megapixel "
                         "limit; downscale it first")
    return img


def resize_to(image: torch.Tensor, size: Tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """``[C, H, W]`` (or ``[B, C, H, W]``) resized to exactly ``size`` = (height, width), aspect not kept.

    Bicubic/bilinear use torch's ``antialias=True`` path both ways: it is PIL's resampling (support-scaled
    filters when shrinking, PIL's bicubic kernel a = -0.5 when enlarging), so "bicubic" matches the PIL
    bicubic resize the original CLIPasso applied (mean difference 0.0014 on random images, i.e. uint8
    rounding; torch's plain bicubic, a = -0.75, differs by 0.015 when enlarging).
    """
    squeeze = image.ndim == 3
    x = image.unsqueeze(0) if squeeze else image
    h, w = x.shape[-2:]
    size = (int(size[0]), int(size[1]))
    if (h, w) != size:
        kw = {"antialias": True} if mode in ("bilinear", "bicubic") else {}
        x = F.interpolate(x, size=size, mode=mode, align_corners=False if mode != "nearest" else None, **kw)
        x = x.clamp(0, 1)
    return x[0] if squeeze else x


def fit_square(image: torch.Tensor, size: int = 224, fill: float = 1.0, margin: int = 0,
               mode: str = "bicubic") -> torch.Tensor:
    """Pad ``[C, H, W]`` (or ``[B, C, H, W]``) to a centred square with ``fill`` and resize to ``size``.

    Never stretches. ``margin`` adds that many pixels of padding on every side first (the
    original's fix_scale used 10 a side, in input pixels). `frame_square` picks the margin per framing.
    """
    squeeze = image.ndim == 3
    x = image.unsqueeze(0) if squeeze else image
    h, w = x.shape[-2:]
    side, top, left = square_box(h, w, margin)
    x = F.pad(x, (left, side - w - left, top, side - h - top), value=fill)
    x = resize_to(x, (size, size), mode)
    return x[0] if squeeze else x


# How a picture becomes the square canvas CLIPasso optimises on (clipasso.pipeline.prepare_target):
# "stretch"   the original's default (fix_scale=0): resized straight to size x size, so a non-square
#             picture is stretched (the sketch is mapped back to the picture's aspect ratio afterwards);
# "fix-scale" the original's fix_scale=1: padded to a white square of side max(H, W) + 20 (10 input
#             pixels a side), then resized;
# "pad"       padded to a white square with a margin of 10 px at the 224 canvas (10/224 of the long
#             side a side), then resized; never stretched.
FRAMINGS = ("stretch", "fix-scale", "pad")
FIX_SCALE_MARGIN = 10  # input pixels a side (the original padded by 20 in total)


def framing_margin(height: int, width: int, framing: str, input_scale: float = 1.0) -> int:
    """Padding in pixels a side of a ``height`` x ``width`` picture for ``framing`` (0 for stretch).

    ``input_scale``: this picture's pixels per pixel of the user's original input (below 1 when it was
    shrunk first), so fix-scale pads by 10 of the ORIGINAL input's pixels.
    """
    if framing == "stretch":
        return 0
    if framing == "fix-scale":
        return int(round(FIX_SCALE_MARGIN * float(input_scale)))
    if framing == "pad":
        return int(round(max(height, width) * 10 / 224))
    raise ImageError(f"framing must be one of {', '.join(FRAMINGS)}; got {framing!r}")


def frame_square(image: torch.Tensor, size: int, framing: str = "pad", fill: float = 1.0,
                 mode: str = "bicubic", input_scale: float = 1.0) -> torch.Tensor:
    """``[C, H, W]`` -> ``[C, size, size]`` framed as ``framing`` (see `FRAMINGS`)."""
    h, w = image.shape[-2:]
    margin = framing_margin(h, w, framing, input_scale)
    if framing == "stretch":
        return resize_to(image, (size, size), mode)
    return fit_square(image, size, fill=fill, margin=margin, mode=mode)


def aspect_canvas(height: int, width: int, long_side: int) -> Tuple[int, int]:
    """(H, W) with the picture's aspect ratio and its long side = ``long_side`` (a stretched sketch's home)."""
    if height >= width:
        return int(long_side), max(1, int(round(long_side * width / height)))
    return max(1, int(round(long_side * height / width))), int(long_side)


def square_box(height: int, width: int, margin: int = 0) -> Tuple[int, int, int]:
    """(side, top, left) of the square `fit_square` pads to, to map points back to the input frame."""
    side = max(height, width) + 2 * margin
    return side, (side - height) // 2, (side - width) // 2


def to_pil(image: torch.Tensor):
    """``[3, H, W]`` or ``[H, W, 3]`` float 0..1 -> PIL RGB image."""
    from PIL import Image

    t = image.detach().float().cpu()
    if t.ndim == 4:
        t = t[0]
    if t.ndim == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
        t = t.permute(1, 2, 0)
    arr = (t.clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return Image.fromarray(arr)
