"""CLIPasso engine: semantically-aware object sketching (Vinker et al., TOG 2022). No ComfyUI imports.

``clipasso.sketch(image, settings=None, **overrides)`` runs the whole pipeline; every option is defined
once in `clipasso.settings`. The engine's folders are its stages, in pipeline order:

    prepare/    the picture: load and check (images), background removal (matting), XDoG lines (xdog)
    place/      where strokes start: ViT saliency (saliency), saliency-guided initialisation (init)
    objective/  the loss: one Objective per target from named terms (CLIP: losses, text; trace)
    optimize/   the Adam loop on all seeds at once, styled strokes (style)
    post/       best-of-N (select), automatic abstraction (abstraction), drawing order (order)
    output/     the differentiable rasterizer (raster), SVG (svg), charts the nodes show (plots)

with `pipeline` (the stages in order), `settings`, `strokes` (the value passed between stages),
`models` (CLIP weights), `errors`, `atomic` (safe file writes) and `cli` at the top; `report` (the
gallery command and its metrics) and `testing` (tiny random models for tests and benchmarks) are not
imported by the pipeline. Heavy imports (open_clip, timm, rembg) happen only when a stage that needs
them runs.

The flat module names of release 0.1 (``clipasso.images``, ``clipasso.raster``, ``clipasso.svg``, ...)
still import, as the same modules, for one release (`MOVED`).
"""
import importlib
import importlib.abc
import importlib.util
import sys

from .errors import ClipassoError

__all__ = ["Strokes", "StrokeError", "ClipassoError", "SketchSettings", "sketch", "render", "read_svg",
           "write_svg", "to_svg"]
__version__ = "0.2.0"

# imported on first use, so that ``import clipasso`` (and the command line's parsing and checks) loads no torch
_LAZY = {"Strokes": "strokes", "StrokeError": "strokes", "sketch": "pipeline", "SketchSettings": "settings",
         "render": "output.raster", "read_svg": "output.svg", "write_svg": "output.svg", "to_svg": "output.svg"}

# release 0.1's module names -> where the module lives now (deprecated; kept for one release)
MOVED = {"images": "prepare.images", "matting": "prepare.matting", "xdog": "prepare.xdog",
         "saliency": "place.saliency", "init": "place.init", "losses": "objective.losses",
         "text": "objective.text", "style": "optimize.style", "select": "post.select",
         "abstraction": "post.abstraction", "order": "post.order", "raster": "output.raster",
         "svg": "output.svg", "plots": "output.plots", "metrics": "report.metrics"}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import clipasso.<old name>`` gives the module at its new place (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, rest = fullname.partition(".")
        if prefix == __name__ and rest in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{MOVED[spec.name.partition('.')[2]]}")

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)  # ``clipasso.strokes`` without importing it first
    raise AttributeError(f"module 'clipasso' has no attribute {name!r}")
