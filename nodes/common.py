"""What every CLIPasso node shares: the custom socket types, tensor layout conversion between
ComfyUI (IMAGE ``[B,H,W,C]``, MASK ``[B,H,W]``) and the engine (``[3,H,W]`` / ``[H,W]``), devices,
colour parsing and the models folder. No algorithm lives here."""
from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

import torch
from comfy_api.latest import io

import clipasso.prepare.images as cimages

CATEGORY = "CLIPasso"

# The stroke set (clipasso.Strokes) travelling between our nodes.
SketchStrokes = io.Custom("SKETCH_STROKES")
# The loaded loss and saliency encoders (nodes.models.ClipassoModels).
ClipassoModelsType = io.Custom("CLIPASSO_MODELS")

MODELS_FOLDER = "clipasso"


class NodeInputError(ValueError):
    """A node input that cannot be used; the message says which input and what to do."""


# --------------------------------------------------------------------------- devices

def compute_device() -> torch.device:
    import comfy.model_management as mm

    return mm.get_torch_device()


def output_device() -> torch.device:
    import comfy.model_management as mm

    return mm.intermediate_device()


def check_interrupted() -> None:
    """Raise ComfyUI's interruption exception when the user pressed Cancel."""
    import comfy.model_management as mm

    mm.throw_exception_if_processing_interrupted()


def free_memory() -> None:
    import comfy.model_management as mm

    mm.soft_empty_cache()


# --------------------------------------------------------------------------- layouts

def images_to_chw(image: torch.Tensor, name: str = "image") -> List[torch.Tensor]:
    """ComfyUI IMAGE ``[B,H,W,C]`` -> list of engine images ``[3,H,W]`` float32 on the CPU."""
    if not isinstance(image, torch.Tensor):
        raise NodeInputError(f"'{name}' must be an IMAGE tensor; got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] == 0:
        raise NodeInputError(f"'{name}' must be an IMAGE batch [B,H,W,C] with at least one picture; "
                             f"got shape {tuple(image.shape)}")
    # Inference tensors from ComfyUI cannot join autograd: copy them into ordinary tensors.
    with torch.inference_mode(False):
        return [cimages.as_rgb(img.detach().float().cpu().clone()) for img in image]


def masks_to_hw(mask: Optional[torch.Tensor], count: int, size: Tuple[int, int],
                name: str = "mask") -> List[Optional[torch.Tensor]]:
    """ComfyUI MASK ``[B,H,W]`` -> ``count`` engine masks ``[H,W]`` (resized to ``size``; a single mask
    is shared by every picture)."""
    if mask is None:
        return [None] * count
    if not isinstance(mask, torch.Tensor):
        raise NodeInputError(f"'{name}' must be a MASK tensor; got {type(mask).__name__}")
    m = mask.detach().float().cpu().clone()
    if m.ndim == 2:
        m = m.unsqueeze(0)
    if m.ndim != 3 or m.shape[0] == 0:
        raise NodeInputError(f"'{name}' must be a MASK [B,H,W]; got shape {tuple(mask.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise NodeInputError(f"'{name}' contains {int((~torch.isfinite(m)).sum())} NaN or infinite value(s); fix "
                             "the node that produced the mask (or clean it, e.g. with a mask threshold node)")
    if m.shape[0] not in (1, count):
        raise NodeInputError(f"'{name}' has {m.shape[0]} masks for {count} pictures; give one mask, "
                             "or one per picture")
    if tuple(m.shape[-2:]) != tuple(size):
        m = torch.nn.functional.interpolate(m.unsqueeze(1), size=tuple(size), mode="bilinear",
                                            align_corners=False).squeeze(1)
    m = m.clamp(0, 1)
    return [m[i if m.shape[0] > 1 else 0] for i in range(count)]


def chw_to_images(images) -> torch.Tensor:
    """Engine images (``[B,3,H,W]`` tensor or list of ``[3,H,W]``) -> ComfyUI IMAGE ``[B,H,W,3]``."""
    if isinstance(images, (list, tuple)):
        images = torch.stack([t.detach() for t in images])
    return images.detach().float().clamp(0, 1).movedim(1, -1).contiguous().to(output_device())


def hw_to_masks(masks) -> torch.Tensor:
    if isinstance(masks, (list, tuple)):
        masks = torch.stack([m.detach() for m in masks])
    if masks.ndim == 2:
        masks = masks.unsqueeze(0)
    return masks.detach().float().clamp(0, 1).contiguous().to(output_device())


# --------------------------------------------------------------------------- the sketch canvas

def picture_on_canvas(picture: torch.Tensor, side: int, framing: str = "pad") -> torch.Tensor:
    """[3,H,W] -> the square target CLIPasso sketches against (the engine's own preparation, matting
    off). framing (clipasso.prepare.images.FRAMINGS): "pad" (default here: centred on white with a 10/224
    margin, never stretched), "fix-scale" (the original's fix_scale=1) or "stretch" (its default)."""
    from clipasso.pipeline import prepare_target

    return prepare_target(picture, canvas=int(side), background_removal=False, framing=framing)[0]


# --------------------------------------------------------------------------- colours

_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")
_NAMED = {"black": "#000000", "white": "#ffffff", "red": "#ff0000", "green": "#00ff00",
          "blue": "#0000ff", "grey": "#808080", "gray": "#808080"}


def parse_color(text: str, name: str) -> Tuple[float, ...]:
    """'#rgb', '#rgba', '#rrggbb', '#rrggbbaa' or a basic colour name -> RGB(A) floats in 0..1."""
    raw = (text or "").strip().lower()
    raw = _NAMED.get(raw, raw)
    m = _HEX.match(raw)
    if not m:
        raise NodeInputError(f"'{name}' must be a colour like #000000, #000000ff or 'black'; got {text!r}")
    digits = m.group(1)
    if len(digits) in (3, 4):
        digits = "".join(c * 2 for c in digits)
    return tuple(int(digits[i:i + 2], 16) / 255.0 for i in range(0, len(digits), 2))


def strokes_or_error(value, name: str = "strokes"):
    from clipasso.strokes import Strokes

    if not isinstance(value, Strokes):
        raise NodeInputError(f"'{name}' must be SKETCH_STROKES (from Initialize Strokes, Optimize Sketch or "
                             f"Load SVG); got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- models folder

def models_dirs() -> List[str]:
    """ComfyUI's ``models/clipasso`` folder(s), registered on first use (also from extra_model_paths.yaml)."""
    import folder_paths

    # appended after any folders extra_model_paths.yaml registered under the same name
    folder_paths.add_model_folder_path(MODELS_FOLDER, os.path.join(folder_paths.models_dir, MODELS_FOLDER))
    return list(folder_paths.get_folder_paths(MODELS_FOLDER))
