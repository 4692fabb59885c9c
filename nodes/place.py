"""The place stage: ViT Saliency (where a CLIP ViT looks, as a MASK, with a heat-map preview) and
Initialize Strokes (CLIPasso's saliency-guided starting strokes, all seeds as one batch)."""

from __future__ import annotations

import warnings

import torch
from comfy_api.latest import io

from .common import (
    CATEGORY,
    ClipassoModelsType,
    NodeInputError,
    SketchStrokes,
    chw_to_images,
    hw_to_masks,
    images_to_chw,
    masks_to_hw,
)
from .inputs import node_settings, setting_input, widget_default

METHODS = ["clip-attention", "clip-relevancy", "mask"]

# a dark-to-bright ramp (black, purple, orange, yellow) for the preview only
_RAMP = torch.tensor([[0.0, 0.0, 0.02], [0.35, 0.05, 0.45], [0.85, 0.25, 0.25], [0.99, 0.65, 0.05], [0.99, 1.0, 0.65]])


def heat_colors(m: torch.Tensor) -> torch.Tensor:
    """[H,W] in 0..1 -> [3,H,W] colours along `_RAMP`."""
    x = m.clamp(0, 1) * (len(_RAMP) - 1)
    i = x.floor().long().clamp(max=len(_RAMP) - 2)
    f = (x - i.float()).unsqueeze(-1)
    c = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    return c.permute(2, 0, 1)


def heat_preview(image: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
    """The saliency over a faded copy of the picture, [3,H,W]."""
    return (0.35 * image + 0.65 * heat_colors(saliency)).clamp(0, 1)


class ViTSaliency(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoSaliency",
            display_name="ViT Saliency (CLIPasso)",
            category=CATEGORY,
            description="Where the CLIP ViT attends in the picture (0..1). CLIPasso starts strokes where this "
            "map is high. An object mask restricts the map to the object.",
            inputs=[
                ClipassoModelsType.Input("models", tooltip="From Load CLIPasso Models; its saliency ViT is used."),
                io.Image.Input("image", tooltip="The picture(s), ideally the object on white (Remove Background)."),
                io.Mask.Input(
                    "mask", optional=True, tooltip="Optional object mask (1 = object): the map is kept only inside it."
                ),
                setting_input(
                    "method",
                    field="saliency",
                    options=METHODS,
                    tooltip="clip-attention: CLS attention averaged over all blocks (the released "
                    "CLIPasso code). clip-relevancy: gradient-weighted relevancy (the paper). "
                    "mask: the mask itself, no ViT.",
                ),
                setting_input(
                    "text",
                    field="saliency_text",
                    optional=True,
                    tooltip="Optional prompt for clip-relevancy (e.g. 'a cat'): relevancy to this "
                    "text instead of to the image itself.",
                ),
            ],
            outputs=[
                io.Mask.Output(
                    "saliency", display_name="saliency", tooltip="Saliency map, 0..1, same size as the picture."
                ),
                io.Image.Output(
                    "preview", display_name="preview", tooltip="Heat-map of the saliency over the picture."
                ),
            ],
        )

    @classmethod
    def execute(cls, models, image, mask=None, method=widget_default("saliency"), text=""):
        from clipasso.place.saliency import saliency_map

        if method not in METHODS:
            raise NodeInputError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
        pictures = images_to_chw(image)
        masks = masks_to_hw(mask, len(pictures), tuple(pictures[0].shape[-2:]))
        prompt = (text or "").strip() or None
        maps, previews = [], []
        # clip-relevancy needs gradients, which ComfyUI's inference mode forbids
        with torch.inference_mode(False), torch.enable_grad():
            for pic, m in zip(pictures, masks):
                sal = (
                    saliency_map(
                        pic,
                        method=method,
                        encoder=models.saliency,
                        mask=m,
                        text=prompt if method == "clip-relevancy" else None,
                    )
                    .detach()
                    .float()
                    .cpu()
                )
                maps.append(sal)
                previews.append(heat_preview(pic, sal))
        return io.NodeOutput(hw_to_masks(maps), chw_to_images(previews))


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
                io.Mask.Input(
                    "saliency",
                    optional=True,
                    tooltip="Saliency map (from ViT Saliency). Without it the starts are uniform "
                    "(or follow the ink map).",
                ),
                io.Mask.Input("mask", optional=True, tooltip="Optional object mask: strokes start only on the object."),
                setting_input("strokes"),
                setting_input("seeds", preset_value=False),
                setting_input("seed", control_after_generate=True),
                setting_input("temperature"),
                setting_input("segments"),
                setting_input("width"),
                setting_input("use_edges"),
                setting_input(
                    "canvas",
                    tooltip="Side of the square canvas the sketch lives on (CLIPasso: 224, "
                    "CLIP's input size). Pictures are padded with white to a square, "
                    "never stretched.",
                ),
            ],
            outputs=[
                SketchStrokes.Output(
                    "initial_strokes", display_name="strokes", tooltip="Initial strokes: pictures x seeds candidates."
                ),
            ],
        )

    @classmethod
    def execute(cls, image, saliency=None, mask=None, **widgets):
        from clipasso.place.init import place_strokes

        settings = node_settings(**widgets)
        pictures = images_to_chw(image)
        size = tuple(pictures[0].shape[-2:])
        with torch.inference_mode(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the engine logs its fallbacks; ComfyUI shows logs, not warnings
            result = place_strokes(
                pictures,
                settings,
                masks_to_hw(saliency, len(pictures), size, "saliency"),
                masks_to_hw(mask, len(pictures), size, "mask"),
            ).cpu()
        return io.NodeOutput(result)


NODES = [ViTSaliency, InitializeStrokes]
