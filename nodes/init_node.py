"""Initialize Strokes: CLIPasso's saliency-guided starting strokes, all seeds as one batch."""
from __future__ import annotations

import warnings

import torch
from comfy_api.latest import io

from .common import CATEGORY, SketchStrokes, images_to_chw, map_on_canvas, masks_to_hw, picture_on_canvas


class InitializeStrokes(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoInitStrokes",
            display_name="Initialize Strokes (CLIPasso)",
            category=CATEGORY,
            description="Place the starting strokes: each stroke is a short random squiggle starting at a pixel "
                        "drawn from the saliency map (intersected with an XDoG ink map). One candidate per seed; "
                        "with a batch of N pictures the output holds N x seeds candidates, picture by picture.",
            inputs=[
                io.Image.Input("image", tooltip="The picture(s) to sketch (for the ink map and the canvas)."),
                io.Mask.Input("saliency", optional=True,
                              tooltip="Saliency map (from ViT Saliency). Without it the starts are uniform "
                                      "(or follow the ink map)."),
                io.Mask.Input("mask", optional=True, tooltip="Optional object mask: strokes start only on the object."),
                io.Int.Input("strokes", default=16, min=1, max=512,
                             tooltip="Number of strokes per sketch (CLIPasso: 16 for a recognisable sketch, "
                                     "fewer for more abstraction)."),
                io.Int.Input("seeds", default=3, min=1, max=64,
                             tooltip="Candidates per picture, optimised together; Select Best keeps the one with "
                                     "the lowest loss (CLIPasso: 3)."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1 - 64000, control_after_generate=True,
                             tooltip="First random seed; the candidates use seed, seed+1000, seed+2000, ... "
                                     "(as the original CLIPasso ran them)."),
                io.Float.Input("temperature", default=0.3, min=0.01, max=10.0, step=0.01,
                               tooltip="Softmax temperature over the saliency map: low = starts crowd on the most "
                                       "salient spots, high = more spread (CLIPasso: 0.3)."),
                io.Int.Input("segments", default=1, min=1, max=16,
                             tooltip="Cubic Bezier segments per stroke (CLIPasso: 1, i.e. 4 control points)."),
                io.Float.Input("width", default=1.5, min=0.1, max=20.0, step=0.1,
                               tooltip="Stroke half-width in canvas pixels (1.5 draws CLIPasso's 3 px line)."),
                io.Boolean.Input("use_edges", default=True,
                                 tooltip="Intersect the saliency with an XDoG ink map, so strokes start on edges "
                                         "(CLIPasso's default)."),
                io.Int.Input("canvas", default=224, min=64, max=1024, step=8,
                             tooltip="Side of the square canvas the sketch lives on (CLIPasso: 224, CLIP's input "
                                     "size). Pictures are padded with white to a square, never stretched."),
            ],
            outputs=[
                SketchStrokes.Output("initial_strokes", display_name="strokes", tooltip="Initial strokes: pictures x seeds candidates."),
            ],
        )

    @classmethod
    def execute(cls, image, saliency=None, mask=None, strokes=16, seeds=3, seed=0, temperature=0.3,
                segments=1, width=1.5, use_edges=True, canvas=224):
        from clipasso.init import initialize_strokes
        from clipasso.strokes import Strokes
        from clipasso.xdog import xdog_edges

        pictures = images_to_chw(image)
        size = tuple(pictures[0].shape[-2:])
        sal_maps = masks_to_hw(saliency, len(pictures), size, "saliency")
        obj_masks = masks_to_hw(mask, len(pictures), size, "mask")
        from clipasso.pipeline import SEED_SPACING

        # the same seeds as the one-box node and the CLI: seed, seed+1000, ... (as the original ran them)
        seed_list = [int(seed) + SEED_SPACING * k for k in range(int(seeds))]
        side = int(canvas)
        parts = []
        with torch.inference_mode(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the engine logs its fallbacks; ComfyUI shows logs, not warnings
            for pic, sal, msk in zip(pictures, sal_maps, obj_masks):
                pic_sq = picture_on_canvas(pic, side)
                edges = xdog_edges(pic_sq) if use_edges else None
                parts.append(initialize_strokes(
                    (side, side), int(strokes), seed_list,
                    saliency=None if sal is None else map_on_canvas(sal, side),
                    edges=edges,
                    mask=None if msk is None else map_on_canvas(msk, side),
                    temperature=float(temperature), num_segments=int(segments), width=float(width),
                    use_edges=bool(use_edges)))
            result = Strokes.concat(parts).cpu()
        return io.NodeOutput(result)


NODES = [InitializeStrokes]
