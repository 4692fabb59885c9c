"""Rasterize Strokes and Select Best Sketch."""
from __future__ import annotations

from typing import Tuple

from comfy_api.latest import io

from .common import (CATEGORY, NodeInputError, SketchStrokes, chw_to_images, hw_to_masks, parse_color,
                     strokes_or_error)


def _canvas_size(strokes, width: int, height: int) -> Tuple[int, int]:
    """(H, W) to draw at: 0 keeps the canvas size, one side alone keeps the aspect ratio."""
    ch, cw = strokes.canvas
    if width <= 0 and height <= 0:
        return ch, cw
    if width <= 0:
        return height, max(1, round(cw * height / ch))
    if height <= 0:
        return max(1, round(ch * width / cw)), width
    return height, width


def render_to_comfy(strokes, size=None, background=(1.0, 1.0, 1.0), width_scale=1.0, color=None):
    """Render every candidate -> (IMAGE [B,H,W,3 or 4], MASK [B,H,W] ink opacity)."""
    import torch
    from clipasso.output.raster import render

    with torch.inference_mode(False), torch.no_grad():
        out = render(strokes.cpu(), size=size, background=background, width_scale=width_scale, color=color)
    image, alpha = out.image, out.alpha
    if background is None:  # transparent: straight ink colour plus alpha as a 4th channel
        image = torch.cat([image, alpha.unsqueeze(1)], 1)
    return chw_to_images(image), hw_to_masks(alpha)


class RasterizeStrokes(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoRasterize",
            display_name="Rasterize Strokes (CLIPasso)",
            category=CATEGORY,
            description="Draw SKETCH_STROKES as pixels at any size: every candidate becomes one image of the batch.",
            inputs=[
                SketchStrokes.Input("strokes", tooltip="The sketch(es) to draw; every candidate becomes one image."),
                io.Int.Input("width", default=0, min=0, max=8192, step=1,
                             tooltip="Output width in pixels. 0 keeps the sketch's canvas width (or follows the "
                                     "height, keeping the aspect ratio)."),
                io.Int.Input("height", default=0, min=0, max=8192, step=1,
                             tooltip="Output height in pixels. 0 keeps the canvas height (or follows the width)."),
                io.String.Input("stroke_color", default="",
                                tooltip="Draw every stroke in this colour (#rrggbb, #rrggbbaa or a name such as "
                                        "'black'); empty keeps each stroke's own colour."),
                io.Float.Input("thickness", default=1.0, min=0.05, max=20.0, step=0.05,
                               tooltip="Multiplies every stroke's width (strokes also scale with the output size)."),
                io.String.Input("background", default="#ffffff",
                                tooltip="Background colour (#rrggbb or a name), or 'transparent' for an RGBA image "
                                        "whose 4th channel is the ink."),
            ],
            outputs=[
                io.Image.Output("image", display_name="image", tooltip="The drawing(s): RGB over the background, or RGBA when the "
                                                 "background is 'transparent'."),
                io.Mask.Output("mask", display_name="mask", tooltip="Ink coverage, 1 where a stroke is drawn (usable as a scribble)."),
            ],
        )

    @classmethod
    def execute(cls, strokes, width=0, height=0, stroke_color="", thickness=1.0, background="#ffffff"):
        strokes = strokes_or_error(strokes)
        size = _canvas_size(strokes, int(width), int(height))
        color = parse_color(stroke_color, "stroke_color") if (stroke_color or "").strip() else None
        bg_text = (background or "").strip().lower()
        if bg_text in ("transparent", "none", "alpha"):
            bg = None
        else:
            bg = parse_color(background, "background")[:3]
        if thickness <= 0:
            raise NodeInputError("'thickness' must be positive")
        image, mask = render_to_comfy(strokes, size=size, background=bg, width_scale=float(thickness), color=color)
        return io.NodeOutput(image, mask)


class SelectBestSketch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoSelectBest",
            display_name="Select Best Sketch (CLIPasso)",
            category=CATEGORY,
            description="Keep the candidate (seed) with the lowest CLIPasso loss, one per input picture.",
            inputs=[
                SketchStrokes.Input("strokes", tooltip="Optimized candidates with their losses (from Optimize "
                                                       "Sketch). With several pictures, the best of each is kept."),
            ],
            outputs=[
                SketchStrokes.Output("best", display_name="best", tooltip="The winning sketch (one per picture)."),
                io.Image.Output("image", display_name="image", tooltip="The winning sketch(es) drawn on white at canvas size."),
                io.Int.Output("index", display_name="index", tooltip="Index of the winner among the candidates (of the first picture)."),
                io.Float.Output("loss", display_name="loss", tooltip="Loss of the winner (of the first picture); lower is better."),
            ],
        )

    @classmethod
    def execute(cls, strokes):
        from clipasso.post.select import select_best
        from clipasso.strokes import Strokes

        strokes = strokes_or_error(strokes)
        if strokes.losses is None:
            raise NodeInputError("these strokes carry no losses, so there is nothing to compare; connect the "
                                 "output of Optimize Sketch (CLIPasso)")
        winners, first_index = [], None
        for group in strokes.picture_groups():
            winner, index = select_best(strokes.select(group))
            winners.append(winner)
            if first_index is None:
                first_index = int(index)
        best = Strokes.concat(winners).cpu()
        image, _ = render_to_comfy(best)
        loss = float(best.losses[0]) if best.losses is not None else float("nan")
        return io.NodeOutput(best, image, first_index, loss)


NODES = [RasterizeStrokes, SelectBestSketch]
