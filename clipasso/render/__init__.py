"""The differentiable rasterizer: strokes -> image, below every stage that renders (objective, optimize,
post, output, report). It imports nothing of the engine but the stroke type.

`raster` holds it: ``render(strokes, ...)`` draws a `Strokes` value, ``rasterize(points, widths, colors,
height, width, background)`` the raw tensors, differentiably with respect to all of them.
"""

from .raster import MAX_RENDER_PIXELS, rasterize, render

__all__ = ["render", "rasterize", "MAX_RENDER_PIXELS"]
