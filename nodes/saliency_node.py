"""ViT Saliency: where a CLIP ViT looks, as a MASK, plus a heat-map preview."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from .common import (CATEGORY, ClipassoModelsType, NodeInputError, chw_to_images, hw_to_masks, images_to_chw,
                     masks_to_hw)

METHODS = ["clip-attention", "clip-relevancy", "mask"]

# a dark-to-bright ramp (black, purple, orange, yellow) for the preview only
_RAMP = torch.tensor([[0.0, 0.0, 0.02], [0.35, 0.05, 0.45], [0.85, 0.25, 0.25], [0.99, 0.65, 0.05],
                      [0.99, 1.0, 0.65]])


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
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional object mask (1 = object): the map is kept only inside it."),
                io.Combo.Input("method", options=METHODS, default="clip-attention",
                               tooltip="clip-attention: CLS attention averaged over all blocks (the released "
                                       "CLIPasso code). clip-relevancy: gradient-weighted relevancy (the paper). "
                                       "mask: the mask itself, no ViT."),
                io.String.Input("text", default="", optional=True,
                                tooltip="Optional prompt for clip-relevancy (e.g. 'a cat'): relevancy to this "
                                        "text instead of to the image itself."),
            ],
            outputs=[
                io.Mask.Output("saliency", display_name="saliency", tooltip="Saliency map, 0..1, same size as the picture."),
                io.Image.Output("preview", display_name="preview", tooltip="Heat-map of the saliency over the picture."),
            ],
        )

    @classmethod
    def execute(cls, models, image, mask=None, method="clip-attention", text=""):
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
                sal = saliency_map(pic, method=method, encoder=models.saliency, mask=m,
                                   text=prompt if method == "clip-relevancy" else None).detach().float().cpu()
                maps.append(sal)
                previews.append(heat_preview(pic, sal))
        return io.NodeOutput(hw_to_masks(maps), chw_to_images(previews))


NODES = [ViTSaliency]
