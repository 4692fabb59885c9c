"""CLIPasso engine: semantically-aware object sketching (Vinker et al., TOG 2022). No ComfyUI imports.

``clipasso.sketch(image, settings=None, **overrides)`` runs the whole pipeline; every option is defined
once in `clipasso.settings`. The engine's folders are its stages, in pipeline order:

    prepare/    the picture: load and check (images), background removal (matting), XDoG lines (xdog)
    place/      where strokes start: ViT saliency (saliency), saliency-guided initialisation (init)
    objective/  the loss: one Objective per target from named terms (CLIP: losses, text; trace)
    optimize/   the Adam loop on all seeds at once, styled strokes (style)
    post/       best-of-N (select), automatic abstraction (abstraction), drawing order (order)
    output/     SVG (svg), charts the nodes show (plots), output paths (paths)

below them `render/` (the differentiable rasterizer every stage that draws uses) and `device` (the one
place that picks the device and the precision); with `pipeline` (the stages in order), `settings`,
`strokes` (the value passed between stages), `models` (CLIP weights), `errors`, `atomic` (safe file
writes) and `cli` at the top; `report` (the
gallery command and its metrics) and `testing` (tiny random models for tests and benchmarks) are not
imported by the pipeline. Heavy imports (open_clip, timm, rembg) happen only when a stage that needs
them runs.
"""

import importlib
import importlib.util

from .errors import ClipassoError

__all__ = [
    "Strokes",
    "StrokeError",
    "ClipassoError",
    "SketchSettings",
    "sketch",
    "render",
    "read_svg",
    "write_svg",
    "to_svg",
]
__version__ = "0.5.0"

# imported on first use, so that ``import clipasso`` (and the command line's parsing and checks) loads no torch
_LAZY = {
    "Strokes": "strokes",
    "StrokeError": "strokes",
    "sketch": "pipeline",
    "SketchSettings": "settings",
    "render": "render.raster",
    "read_svg": "output.svg",
    "write_svg": "output.svg",
    "to_svg": "output.svg",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)  # ``clipasso.strokes`` without importing it first
    raise AttributeError(f"module 'clipasso' has no attribute {name!r}")
