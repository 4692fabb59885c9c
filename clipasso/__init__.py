"""CLIPasso engine: semantically-aware object sketching (Vinker et al., TOG 2022). No ComfyUI imports.

``clipasso.sketch(image, ...)`` runs the whole pipeline; the stages live in the submodules. Heavy
imports (open_clip, timm, rembg) happen only when a stage that needs them is used.
"""
from .strokes import Strokes, StrokeError

__all__ = ["Strokes", "StrokeError", "sketch", "render", "read_svg", "write_svg", "to_svg"]
__version__ = "0.1.0"

_LAZY = {"sketch": "pipeline", "render": "raster", "read_svg": "svg", "write_svg": "svg", "to_svg": "svg"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'clipasso' has no attribute {name!r}")
