"""Turning whatever the user hands us into a clean RGB tensor, and back.

Every entry point (CLI, pipeline, ComfyUI nodes) goes through `as_rgb`, so bad input is
caught once, with one clear message: empty or NaN images, odd channel counts, huge images.
Files are opened only by `load_image_file` (size checked from the header before decoding, damaged
files, folders, links, EXIF orientation); `check_sketch_size` is the minimum `prepare_target` enforces.
Every refusal is an `ImageError`, which the CLI prints as ``clipasso: error: ...``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from PIL import Image

from .files import ImageError, check_image_path, shown_path  # noqa: F401 - checks that need no torch

MAX_PIXELS = 64_000_000  # 8000 x 8000; larger inputs are refused rather than silently eating RAM
MIN_SIDE = 8  # px: a picture narrower or shorter than this has nothing to sketch (prepare_target refuses it)


def _background_tensor(background, device, dtype) -> torch.Tensor:
    bg = torch.as_tensor(background, dtype=dtype, device=device).reshape(-1)
    if bg.numel() == 1:
        bg = bg.expand(3)
    if bg.numel() != 3:
        raise ImageError(f"background must be one grey value or an RGB triple in 0..1; got {background!r}")
    return bg.view(3, 1, 1)


def as_rgb(
    image, background: Union[float, Sequence[float]] = 1.0, max_pixels: int = MAX_PIXELS, layout: str = "auto"
) -> torch.Tensor:
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
    if isinstance(image, (str, bytes, os.PathLike)):
        image = load_image_file(image)
    if hasattr(image, "mode") and hasattr(image, "convert"):  # PIL image
        image = np.array(plain_mode(image))  # a writable copy (torch.from_numpy warns on read-only arrays)
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
        raise ImageError(
            f"cannot read an image from {type(image).__name__}; give a file path, "
            "a PIL image, a numpy array or a torch tensor"
        )

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
        raise ImageError(
            f"the image is {w}x{h} = {h * w / 1e6:.0f} megapixels, above the limit of "
            f"{max_pixels / 1e6:.0f}; downscale it first (sketching works at 224 px anyway)"
        )
    if c not in (1, 2, 3, 4):
        raise ImageError(f"an image needs 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels; got {c}")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ImageError(
            f"the image contains {bad} NaN or infinite value(s); fix the node or code that produced it "
            "(or replace them, e.g. with torch.nan_to_num) and try again"
        )
    if float(t.max()) > 1.0 + 1e-3 or float(t.min()) < -1e-3:
        if float(t.min()) >= 0 and float(t.max()) <= 255.0 + 1e-3:
            t = t / 255.0  # a float image in 0..255
        else:
            raise ImageError(
                f"image values must lie in 0..1 (or 0..255); got {float(t.min()):.3g}..{float(t.max()):.3g}"
            )
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
    if isinstance(image, (str, bytes, os.PathLike)):
        image = load_image_file(image)
    if hasattr(image, "mode") and hasattr(image, "convert"):
        plain = plain_mode(image)
        if plain.mode in ("RGBA", "LA"):
            return torch.from_numpy(np.asarray(plain)[..., -1].astype(np.float32) / 255.0)
        return None
    arr = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.asarray(image))
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):
        a = arr[..., -1].float()
        return a / 255.0 if a.max() > 1 else a
    return None


# Pillow modes -> the few that `as_rgb` reads directly (8-bit L/LA/RGB/RGBA, or float F).
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I;16S")


def plain_mode(pil):
    """A PIL image in one of the modes L, LA, RGB, RGBA or F, with nothing lost that a sketch needs.

    16-bit grey (I;16, I;16B, ...) is scaled to 8 bits (65535 -> 255; Pillow's own conversion would
    clip it to white); 32-bit integer "I" is read as 16-bit when any value exceeds 255, as 8-bit
    otherwise. Palette images become RGBA when they have transparency (RGB otherwise); CMYK, YCbCr,
    LAB, HSV become RGB, 1-bit becomes L. Pillow already opens 16-bit-per-channel RGB(A) PNGs (48/64-bit)
    as 8-bit RGB(A).
    """
    from PIL import Image

    mode = pil.mode
    if mode in ("L", "LA", "RGB", "RGBA", "F"):
        return pil
    try:
        if mode in _SIXTEEN_BIT or mode == "I":
            arr = np.asarray(pil).astype(np.float64)
            if mode in _SIXTEEN_BIT or float(arr.max(initial=0)) > 255:
                arr = arr / 257.0
            return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        if mode == "1":
            return pil.convert("L")
        if mode in ("P", "PA"):
            has_alpha = mode == "PA" or "transparency" in pil.info
            return pil.convert("RGBA" if has_alpha else "RGB")
        if mode == "La":
            return pil.convert("LA")
        if "A" in mode or "a" in mode or "transparency" in pil.info:  # RGBa, RGBA-like, tRNS on RGB
            return pil.convert("RGBA")
        return pil.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(
            f"cannot use a Pillow image in mode {mode!r} ({exc}); convert it to RGB first, e.g. image.convert('RGB')"
        ) from exc


def check_sketch_size(height: int, width: int, min_side: int = MIN_SIDE) -> None:
    """Refuse a picture too small to sketch (a side below ``min_side`` px): its loss would mean nothing."""
    if min(int(height), int(width)) < min_side:
        raise ImageError(
            f"the image is {int(width)}x{int(height)} pixels, too small to sketch: both sides must be "
            f"at least {min_side} px; give a larger picture of the object (sketching works at 224 px)"
        )


def _header_size(path):
    """(width, height) read from the file's header without Pillow's decompression-bomb check, or None.

    Walks Pillow's format registry (Image.ID / Image.OPEN) as Image.open does; only the header is read."""
    from PIL import Image

    try:
        Image.init()
        with open(path, "rb") as fh:
            prefix = fh.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                if accept is not None and not accept(prefix):
                    continue
                fh.seek(0)
                try:
                    return tuple(factory(fh, path).size)
                except Exception:  # noqa: BLE001 - not this format: try the next
                    continue
    except Exception:  # noqa: BLE001 - the size only improves the message
        return None
    return None


def _too_big(shown: str, width, height, pixels, limit: int) -> ImageError:
    size = f"{width}x{height} = " if width else ""
    side = int(limit**0.5)
    mp = f"{pixels / 1e6:.0f}" if round(pixels / 1e6) > limit / 1e6 else f"{pixels / 1e6:.2f}"
    return ImageError(
        f"{shown} is {size}{mp} megapixels, above the {limit / 1e6:.0f} megapixel "
        f"limit ({side}x{side}); shrink the picture first, e.g. to 2000 px on the long side "
        "(sketching works at 224 px anyway)"
    )


def load_image_file(path, max_pixels: int = MAX_PIXELS) -> "Image.Image":
    """Open an image file with every check done before decoding, EXIF orientation applied.

    ``path``: str, bytes (a non-UTF-8 name on Linux) or os.PathLike. Refused with `ImageError` and a
    message that says what to do: a missing file, a folder, a symlink loop, a name too long, an
    unreadable or empty file, a file that is not an image, one whose header claims more than
    ``max_pixels`` (checked from the header, so a huge picture is never decoded; Pillow's own
    decompression-bomb error and warning lead to the same message), and damaged or truncated data.
    The result is loaded (the file is closed) and upright: a photo rotated by its EXIF Orientation
    tag is turned the way a viewer shows it. Its mode is whatever the file holds (see `plain_mode`).
    """
    import re
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        path = os.fspath(path)
    except TypeError as exc:
        raise ImageError(f"an image file name must be a str, bytes or path; got {type(path).__name__}") from exc
    if isinstance(path, bytes) and (b"\0" in path or len(path) > 65536):
        raise ImageError(
            "got bytes that look like file contents, not a file name; open them with "
            "PIL.Image.open(io.BytesIO(data)) and pass the image"
        )
    shown = shown_path(path)
    st = check_image_path(path)
    if st.st_size == 0:
        raise ImageError(f"{shown} is empty (0 bytes); the picture was not written completely, save it again")
    try:
        with warnings.catch_warnings():
            # the header check below is stricter than the size at which Pillow warns
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        size = _header_size(path)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = size[0] * size[1] if size else (int(found.group(1)) if found else float("nan"))
        raise _too_big(shown, *(size or (None, None)), pixels, max_pixels) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{shown} is not an image Pillow can read (PNG, JPEG, WebP, BMP, TIFF, GIF, ...); check "
            "that it is a picture and not, e.g., a text file or web page saved under an image's "
            "name"
        ) from None
    except PermissionError:
        raise ImageError(f"no permission to read {shown}; check its permissions") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"could not read {shown}: {exc}; the file may be damaged, save or export it again") from None
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise _too_big(shown, w, h, w * h, max_pixels)
        try:
            img.load()
        except MemoryError:
            raise ImageError(f"not enough memory to decode {shown} ({w}x{h}); shrink the picture first") from None
        except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise OSError, ValueError, SyntaxError, ...
            why = str(exc) or type(exc).__name__
            raise ImageError(
                f"could not decode {shown}: {why}; the file is damaged or truncated (was it copied "
                "or downloaded completely?), save or export it again"
            ) from None
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: keep the picture as stored
        orientation = 1
    if orientation not in (1, None):
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # noqa: BLE001 - a bad orientation value: keep the picture as stored
            pass
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


def fit_square(
    image: torch.Tensor, size: int = 224, fill: float = 1.0, margin: int = 0, mode: str = "bicubic"
) -> torch.Tensor:
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
from ..settings import FRAMINGS  # noqa: E402 - defined with the settings

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


def frame_square(
    image: torch.Tensor,
    size: int,
    framing: str = "pad",
    fill: float = 1.0,
    mode: str = "bicubic",
    input_scale: float = 1.0,
) -> torch.Tensor:
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
