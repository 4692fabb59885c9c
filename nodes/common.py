"""What every CLIPasso node shares: the custom socket types, tensor layout conversion between
ComfyUI (IMAGE ``[B,H,W,C]``, MASK ``[B,H,W]``) and the engine (``[3,H,W]`` / ``[H,W]``), devices,
colour parsing and the models folder. No algorithm lives here."""

from __future__ import annotations

import logging
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


class CompileNotices:
    """While a node runs: the compiled encoder's lines (logger ``clipasso.compile``: "compiling the
    encoder once for this machine (about N s)", why it runs eager) as text on the node
    (``send_progress_text``) besides ComfyUI's console. Use as ``with CompileNotices(cls): ...``."""

    def __init__(self, node_cls=None):
        hidden = getattr(node_cls, "hidden", None)
        self.node_id = getattr(hidden, "unique_id", None) if hidden is not None else None

    def __enter__(self):
        self.logger = logging.getLogger("clipasso.compile")
        self.old_level = self.logger.level
        self.handler = _NodeTextHandler(self.node_id)
        self.logger.addHandler(self.handler)
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.old_level)
        return False


class _NodeTextHandler(logging.Handler):
    def __init__(self, node_id):
        super().__init__()
        self.node_id = node_id

    def emit(self, record) -> None:
        if self.node_id is None:
            return
        try:
            from server import PromptServer

            server = getattr(PromptServer, "instance", None)
            send = getattr(server, "send_progress_text", None)
            if send is not None:
                send(record.getMessage().replace("clipasso: compile: ", ""), self.node_id)
        except Exception:  # text on the node is a courtesy; it must never fail the run
            pass


# --------------------------------------------------------------------------- layouts


def images_to_chw(image: torch.Tensor, name: str = "image") -> List[torch.Tensor]:
    """ComfyUI IMAGE ``[B,H,W,C]`` -> list of engine images ``[3,H,W]`` float32 on the CPU."""
    if not isinstance(image, torch.Tensor):
        raise NodeInputError(f"'{name}' must be an IMAGE tensor; got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] == 0:
        raise NodeInputError(
            f"'{name}' must be an IMAGE batch [B,H,W,C] with at least one picture; got shape {tuple(image.shape)}"
        )
    # Inference tensors from ComfyUI cannot join autograd: copy them into ordinary tensors.
    with torch.inference_mode(False):
        return [cimages.as_rgb(img.detach().float().cpu().clone()) for img in image]


def masks_to_hw(
    mask: Optional[torch.Tensor], count: int, size: Tuple[int, int], name: str = "mask"
) -> List[Optional[torch.Tensor]]:
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
        raise NodeInputError(
            f"'{name}' contains {int((~torch.isfinite(m)).sum())} NaN or infinite value(s); fix "
            "the node that produced the mask (or clean it, e.g. with a mask threshold node)"
        )
    if m.shape[0] not in (1, count):
        raise NodeInputError(f"'{name}' has {m.shape[0]} masks for {count} pictures; give one mask, or one per picture")
    if tuple(m.shape[-2:]) != tuple(size):
        m = torch.nn.functional.interpolate(
            m.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False
        ).squeeze(1)
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
_NAMED = {
    "black": "#000000",
    "white": "#ffffff",
    "red": "#ff0000",
    "green": "#00ff00",
    "blue": "#0000ff",
    "grey": "#808080",
    "gray": "#808080",
}


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
    return tuple(int(digits[i : i + 2], 16) / 255.0 for i in range(0, len(digits), 2))


def strokes_or_error(value, name: str = "strokes"):
    from clipasso.strokes import Strokes

    if not isinstance(value, Strokes):
        raise NodeInputError(
            f"'{name}' must be SKETCH_STROKES (from Initialize Strokes, Optimize Sketch or "
            f"Load SVG); got {type(value).__name__}"
        )
    return value


# --------------------------------------------------------------------------- models folder


def models_dirs() -> List[str]:
    """ComfyUI's ``models/clipasso`` folder(s), registered on first use (also from extra_model_paths.yaml)."""
    import folder_paths

    # appended after any folders extra_model_paths.yaml registered under the same name
    folder_paths.add_model_folder_path(MODELS_FOLDER, os.path.join(folder_paths.models_dir, MODELS_FOLDER))
    return list(folder_paths.get_folder_paths(MODELS_FOLDER))


# --------------------------------------------------------------------------- where nodes may read and write

# A shared server (--listen) runs workflows from anyone who reaches it: a node that takes a file or folder
# name keeps to ComfyUI's folders, as core's own loaders do. The server's owner lifts that with this variable.
ANY_PATH_ENV = "CLIPASSO_ALLOW_ANY_PATH"
# More folders pictures may come from, registered by the owner in extra_model_paths.yaml under this name.
PICTURES_FOLDER = "clipasso_input"


class PathNotAllowedError(NodeInputError):
    """A file or folder name that leads outside the folders a node may use."""


def any_path_allowed() -> bool:
    """True when the server's owner set CLIPASSO_ALLOW_ANY_PATH=1 (or true/yes/on)."""
    return os.environ.get(ANY_PATH_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def picture_roots() -> List[str]:
    """Where pictures may be read from: ComfyUI's input folder (moved by --input-directory), then the
    folders registered as ``clipasso_input`` in extra_model_paths.yaml."""
    import folder_paths

    roots = [folder_paths.get_input_directory()]
    try:
        roots += [p for p in folder_paths.get_folder_paths(PICTURES_FOLDER) if p not in roots]
    except KeyError:  # nothing registered under that name
        pass
    return roots


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def is_inside(path: str, root: str) -> bool:
    """Whether ``path`` lies in ``root`` once both are resolved (``..`` and symlinks followed), compared
    by whole path components (``/data/in`` does not contain ``/data/input2``)."""
    real, top = _real(path), _real(root)
    try:
        return os.path.commonpath([real, top]) == top
    except ValueError:  # different drives (Windows), or one relative and one absolute
        return False


def contained_path(
    name: str,
    roots: List[str],
    what: str,
    label: str,
    rule: str,
    base: Optional[str] = None,
    shown: Optional[str] = None,
) -> str:
    """The resolved path of ``name`` (a relative name is taken inside ``base``, by default ``roots[0]``)
    when it stays inside one of ``roots``; else `PathNotAllowedError` saying what was refused, where it
    may lead (``label``: the folders, e.g. "ComfyUI's input folder"; ``rule``: what may be there). The message
    shows ``shown`` (default ``name``), never where a symlink points: it goes back to whoever queued the
    workflow. With CLIPASSO_ALLOW_ANY_PATH=1 every path is accepted."""
    path = os.path.join(base or roots[0], name)  # an absolute name replaces the base
    real = os.path.realpath(path)
    if any_path_allowed() or any(is_inside(real, root) for root in roots):
        return real
    where = " or ".join(os.path.realpath(r) for r in roots)
    raise PathNotAllowedError(
        f"{what} {(shown or name)!r} is refused: it leads outside {label} ({where}). {rule}: give a name "
        f"relative to {os.path.realpath(roots[0])}, without '..' or symlinks that point elsewhere. A server's "
        f"owner who wants these nodes to use any path on the machine starts ComfyUI with {ANY_PATH_ENV}=1."
    )


def picture_path(name: str, what: str, kind: str = "Pictures", shown: Optional[str] = None) -> str:
    """``name`` (a file or folder of pictures) resolved inside ComfyUI's input folder or another
    `picture_roots` folder; anything else is refused (see `contained_path`)."""
    roots = picture_roots()
    label = "ComfyUI's input folder" + (f" and the {PICTURES_FOLDER} folders" if len(roots) > 1 else "")
    return contained_path(
        name,
        roots,
        what,
        label,
        f"{kind} may come only from inside {label} (the server's "
        f"owner can add folders as '{PICTURES_FOLDER}: <folder>' in extra_model_paths.yaml)",
        shown=shown,
    )


def output_path(name: str, what: str) -> str:
    """``name`` resolved inside ComfyUI's output folder (moved by --output-directory); anything else is
    refused (see `contained_path`)."""
    import folder_paths

    return contained_path(
        name,
        [folder_paths.get_output_directory()],
        what,
        "ComfyUI's output folder",
        "Nodes write only inside ComfyUI's output folder",
    )
