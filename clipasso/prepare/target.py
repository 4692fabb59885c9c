"""The prepare stage's main call: any input picture -> the square target the loss compares against.

    load -> shrink a huge picture early -> alpha over white -> background removal (rembg, or the
    input's own alpha) -> framing on the square canvas (``framing``: "stretch", the original's default;
    "fix-scale", its fix_scale=1; "pad", a white square with a small margin).

`to_picture_frame` is the way back: strokes optimised on the stretched square mapped to the picture's
own aspect ratio.
"""

from __future__ import annotations

import os
from typing import List, Optional

import numpy as np
import torch

from ..settings import ModelSettings, PrepareSettings, SettingsError, SketchSettings, field_option
from ..strokes import Strokes
from .images import ImageError, alpha_of, as_rgb, aspect_canvas, check_sketch_size, frame_square

WORK_MAX_SIDE = 1024  # inputs are shrunk to this before matting; the sketch is made at 224 anyway


def shrink_early(image):
    """Big files/arrays are shrunk with PIL before becoming float tensors (an 8000 px photo would
    otherwise cost gigabytes on the way to a 224 px target)."""
    return _shrink_early_scaled(image)[0]


def _shrink_early_scaled(image):
    """`shrink_early` and the scale it applied (new long side / original long side; 1.0 if none)."""
    from PIL import Image

    from .images import load_image_file, plain_mode

    if isinstance(image, (str, bytes, os.PathLike)):
        image = load_image_file(image)
    scale = 1.0
    if isinstance(image, Image.Image):
        check_sketch_size(image.height, image.width)  # before any shrinking: the picture's own size
    if (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim in (2, 3)
        and max(image.shape[:2]) > WORK_MAX_SIDE
        and (image.ndim == 2 or image.shape[2] in (1, 3, 4))
    ):
        check_sketch_size(*image.shape[:2])
        arr = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
        image = Image.fromarray(arr)
    if isinstance(image, Image.Image) and max(image.size) > WORK_MAX_SIDE:
        before = max(image.size)
        image = plain_mode(image)  # 16-bit, palette, CMYK, ... -> L/LA/RGB/RGBA/F, transparency kept
        image = image.copy()
        image.thumbnail((WORK_MAX_SIDE, WORK_MAX_SIDE), Image.LANCZOS)
        scale = max(image.size) / before
    return image, scale


def check_framing(framing: str) -> str:
    """``framing``, checked as the settings check it (`clipasso.settings.PrepareSettings.framing`)."""
    msg = field_option("framing").problem("framing", framing)
    if msg:
        raise SettingsError(msg)
    return framing


def to_picture_frame(strokes: Strokes, height: int, width: int, framing: str) -> Strokes:
    """Strokes optimised on the square canvas -> the input picture's frame.

    Only "stretch" changes anything, and only for a non-square ``height`` x ``width`` input: the
    stretch is undone by scaling x and y apart, so the drawing has the picture's aspect ratio with its
    long side = the canvas side. Pen widths are kept (CLIPasso's 3 px line stays 3 px).
    """
    if framing != "stretch" or height == width:
        return strokes
    h, w = aspect_canvas(height, width, max(strokes.canvas))
    sy, sx = h / strokes.height, w / strokes.width
    return strokes.replace(points=strokes.points * strokes.points.new_tensor([sx, sy]), canvas=(h, w))


STANDALONE = PrepareSettings(framing="pad")  # prepare_target's defaults when called without settings


def prepare_target(
    image,
    settings=None,
    *,
    notes: Optional[List[str]] = None,
    models_dir=None,
    allow_download: Optional[bool] = None,
    **overrides,
):
    """(target [3,canvas,canvas] on white, mask [canvas,canvas] or None) from any input image.

    settings: a `PrepareSettings` or a whole `SketchSettings` (None: the defaults, except framing "pad",
    the nodes' and benchmarks' framing); ``overrides``: its fields on top (canvas, framing,
    background_removal, matting_model), validated by the settings.
    framing (`clipasso.prepare.images.FRAMINGS`): "stretch" resizes straight to the square (a non-square
    picture is stretched, as the original's default fix_scale=0 did); "fix-scale" pads to a white
    square of side max(H, W) + 20 input pixels first (the original's fix_scale=1); "pad" pads with a
    margin of 10 px at 224. All resize with torch's antialiased bicubic filter (PIL-like; the original
    used PIL's bicubic); the mask bilinearly, cut at 0.5.
    models_dir: a folder or a list, searched for the matting model before $CLIPASSO_MODELS_DIR;
    allow_download: whether rembg may download it (both default to a whole `SketchSettings`' models
    settings, else to None and True). notes: a list that gets what was done instead of asked.
    """
    models = settings.models if isinstance(settings, SketchSettings) else ModelSettings()
    st = PrepareSettings.of(STANDALONE if settings is None else settings, **overrides)
    target, mask, _ = prepare_picture(
        image,
        st,
        models.models_dir if models_dir is None else models_dir,
        models.allow_download if allow_download is None else allow_download,
        notes,
    )
    return target, mask


def prepare_picture(
    image, settings: PrepareSettings, models_dir=None, allow_download: bool = True, notes=None, keep_background=False
):
    """`prepare_target` with validated `PrepareSettings`, plus the input picture's (height, width), to map a
    stretched sketch back. ``keep_background``: the matte is computed as background removal computes it, but
    the picture keeps its background (scene mode, `clipasso.prepare.layers`)."""
    canvas, framing = int(settings.canvas), settings.framing
    background_removal, matting_model = settings.background_removal, settings.matting_model
    notes = notes if notes is not None else []
    image, scale = _shrink_early_scaled(image)
    rgb = as_rgb(image)  # alpha over white; clear errors for empty / NaN / odd channels
    h, w = rgb.shape[-2:]
    if scale == 1.0:  # not shrunk above: these are the picture's own sides
        check_sketch_size(h, w)
    if max(h, w) > WORK_MAX_SIDE:  # tensors and float arrays
        s = WORK_MAX_SIDE / max(h, w)
        scale *= s
        rgb = torch.nn.functional.interpolate(
            rgb.unsqueeze(0),
            size=(max(1, round(h * s)), max(1, round(w * s))),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0].clamp(0, 1)
        h, w = rgb.shape[-2:]
    alpha = None
    try:
        alpha = alpha_of(image)
    except Exception:  # noqa: BLE001 - an odd alpha channel is simply not used
        alpha = None
    mask = None
    if alpha is not None and tuple(alpha.shape) != (h, w):
        alpha = torch.nn.functional.interpolate(
            alpha[None, None].float(), size=(h, w), mode="bilinear", align_corners=False
        )[0, 0]
    if alpha is not None and not bool((alpha >= 0.5).any()):
        raise ImageError(
            f"the image is fully transparent (no pixel of its {w}x{h} has alpha 0.5 or more): there "
            "is nothing to sketch; give a picture whose object is visible, or remove its alpha channel"
        )
    if alpha is not None and float(alpha.min()) < 1.0:
        mask = (alpha >= 0.5).float()
        rgb = rgb * mask + (1 - mask)
        notes.append("the input's transparency was used as the object mask (no matting model run)")
    elif background_removal:
        from .matting import remove_background

        mat = remove_background(rgb, model=matting_model, models_dir=models_dir, allow_download=allow_download)
        rgb, mask = (rgb if keep_background else mat.image), mat.mask
        if not mat.found:
            notes.append("background removal found no object; the whole image was used")
            mask = None
    target = frame_square(rgb, canvas, framing, fill=1.0, input_scale=scale)
    if mask is not None:
        mask = frame_square(mask[None], canvas, framing, fill=0.0, mode="bilinear", input_scale=scale)[0]
        mask = (mask >= 0.5).float()
        if not bool(mask.any()):
            mask = None
    return target, mask, (int(h), int(w))
