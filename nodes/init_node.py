"""Initialize Strokes: CLIPasso's saliency-guided starting strokes, all seeds as one batch."""
from __future__ import annotations

import warnings

import torch
from comfy_api.latest import io

from .common import CATEGORY, NodeInputError, SketchStrokes, images_to_chw, masks_to_hw
from .inputs import setting_input, settings_overrides


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
                setting_input("strokes"),
                setting_input("seeds", preset_value=False),
                setting_input("seed", control_after_generate=True),
                setting_input("temperature"),
                setting_input("segments"),
                setting_input("width"),
                setting_input("use_edges"),
                setting_input("canvas", tooltip="Side of the square canvas the sketch lives on (CLIPasso: 224, "
                                                "CLIP's input size). Pictures are padded with white to a square, "
                                                "never stretched."),
            ],
            outputs=[
                SketchStrokes.Output("initial_strokes", display_name="strokes", tooltip="Initial strokes: pictures x seeds candidates."),
            ],
        )

    @classmethod
    def execute(cls, image, saliency=None, mask=None, **widgets):
        from clipasso.place.init import place_strokes
        from clipasso.settings import SettingsError, SketchSettings

        try:
            settings = SketchSettings().replace(**settings_overrides(**widgets)).validate()
        except SettingsError as exc:
            raise NodeInputError(str(exc)) from None
        pictures = images_to_chw(image)
        size = tuple(pictures[0].shape[-2:])
        with torch.inference_mode(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the engine logs its fallbacks; ComfyUI shows logs, not warnings
            result = place_strokes(pictures, settings, masks_to_hw(saliency, len(pictures), size, "saliency"),
                                   masks_to_hw(mask, len(pictures), size, "mask")).cpu()
        return io.NodeOutput(result)


NODES = [InitializeStrokes]
