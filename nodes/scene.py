"""Scene mode, node by node (`clipasso.scene`): Split Scene Layers (a picture and its object mask -> the
foreground and background targets and the regions their strokes start in) and Combine Sketch Layers (the two
layers' sketches -> one SKETCH_STROKES whose strokes carry their layer; Save SVG writes one group per layer).

Between them each layer is an ordinary sketch: Initialize Strokes on the layer's target with its region as
mask (and saliency), Optimize Sketch on the same target; for the background, a ViT loss model with
``vit_block`` set gives CLIPascene's fidelity axis. The one-box CLIPasso Sketch does all of it with
``scene`` on.
"""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from .common import (
    CATEGORY,
    NodeInputError,
    SketchStrokes,
    chw_to_images,
    hw_to_masks,
    images_to_chw,
    masks_to_hw,
    strokes_or_error,
)
from .output import render_to_comfy

log = logging.getLogger("clipasso.nodes.scene")

WHITE_LEVEL = 0.98  # a picture this bright everywhere outside the object is probably a cut-out


class SplitSceneLayers(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoSplitLayers",
            display_name="Split Scene Layers (CLIPasso)",
            category=CATEGORY,
            description="Split a photo into the two layers of a scene sketch (CLIPascene): the object on white, "
            "and the background with the object's hole filled by inpainting, so background strokes do not "
            "trace the object again. Also gives each layer's region, where its strokes may start. A picture "
            "without an object (empty mask) is one background layer; the foreground then comes out white "
            "with an empty region.",
            inputs=[
                io.Image.Input(
                    "image",
                    tooltip="The whole photo, background included (Load Image's output, not the cut-out "
                    "of Remove Background); every picture of a batch is split.",
                ),
                io.Mask.Input(
                    "mask",
                    tooltip="The object's mask, 1 = object (Remove Background's mask); cut at 0.5. One mask "
                    "is shared by every picture, or give one per picture.",
                ),
                io.Int.Input(
                    "hole_margin",
                    default=-1,
                    min=-1,
                    max=256,
                    step=1,
                    optional=True,
                    tooltip="Pixels the object's hole grows by before it is filled, so the object's soft edge "
                    "is not copied into the background. -1: automatic (1.5% of the picture's long side).",
                ),
            ],
            outputs=[
                io.Image.Output(
                    "foreground", display_name="foreground", tooltip="The object on white: the foreground's target."
                ),
                io.Image.Output(
                    "background",
                    display_name="background",
                    tooltip="The photo with the object's hole inpainted: the background's target.",
                ),
                io.Mask.Output(
                    "foreground_region",
                    display_name="foreground_region",
                    tooltip="Where foreground strokes start (the object); connect it to Initialize Strokes' mask.",
                ),
                io.Mask.Output(
                    "background_region",
                    display_name="background_region",
                    tooltip="Where background strokes start (everything outside the filled hole); connect it "
                    "to the background's Initialize Strokes mask.",
                ),
            ],
        )

    @classmethod
    def execute(cls, image, mask=None, hole_margin=-1):
        from clipasso.prepare.layers import LayerError, split_layers

        if mask is None:
            raise NodeInputError("'mask' is missing: connect the object mask (e.g. Remove Background's mask output)")
        margin = int(hole_margin)
        if margin < -1:
            raise NodeInputError(f"'hole_margin' must be -1 (automatic) or a number of pixels >= 0; got {margin}")
        pictures = images_to_chw(image)
        size = tuple(pictures[0].shape[-2:])
        if any(tuple(p.shape[-2:]) != size for p in pictures):
            raise NodeInputError("the pictures of the 'image' batch must all have the same size")
        masks = masks_to_hw(mask, len(pictures), size, "mask")
        fg, bg, fg_region, bg_region = [], [], [], []
        for i, (picture, m) in enumerate(zip(pictures, masks)):
            try:
                layers = split_layers(picture, m, margin=None if margin < 0 else margin)
            except LayerError as exc:
                raise NodeInputError(f"picture {i} of 'image' cannot be split: {exc}") from None
            white = torch.ones_like(picture)
            none = torch.zeros(size)
            if layers.foreground is None:
                log.warning("Split Scene Layers: picture %d has no object in its mask; it is all background", i)
            if layers.background is None:
                log.warning("Split Scene Layers: in picture %d the object fills the picture; it has no background", i)
            elif layers.foreground is not None:
                outside = layers.region("background") > 0.5
                if bool(outside.any()) and float(picture[:, outside].min()) >= WHITE_LEVEL:
                    log.warning(
                        "Split Scene Layers: picture %d is white everywhere outside the object: connect the "
                        "original photo (Load Image), not Remove Background's cut-out, to keep its background",
                        i,
                    )
            fg.append(layers.foreground if layers.foreground is not None else white)
            bg.append(layers.background if layers.background is not None else white)
            fg_region.append(layers.region("foreground") if layers.foreground is not None else none)
            bg_region.append(layers.region("background") if layers.background is not None else none)
        return io.NodeOutput(chw_to_images(fg), chw_to_images(bg), hw_to_masks(fg_region), hw_to_masks(bg_region))


def _one_per_picture(strokes, name: str):
    """One sketch per picture of ``strokes`` (the lowest-loss candidate of each picture's group)."""
    from clipasso.post.select import select_best

    out = []
    for group in strokes.picture_groups():
        part = strokes.select(group)
        if part.num_candidates > 1:
            if part.losses is None:
                raise NodeInputError(
                    f"'{name}' holds {part.num_candidates} candidates per picture and no losses to choose by; "
                    "connect Optimize Sketch (its losses pick the best) or Select Best"
                )
            part = select_best(part)[0]
        out.append(part.cpu())
    return out


class CombineSketchLayers(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoCombineLayers",
            display_name="Combine Sketch Layers (CLIPasso)",
            category=CATEGORY,
            description="Join the background's and the foreground's sketches into one sketch, background drawn "
            'first, every stroke labelled with its layer: Save SVG writes them as <g id="background"> and '
            '<g id="foreground">, and Load SVG reads the layers back. Each layer keeps its best candidate '
            "(lowest loss) per picture. Both layers must live on the same canvas with the same segments per "
            "stroke. To let the layers meet, run Optimize Sketch on the combined strokes against the whole "
            "photo for a few iterations (the joint pass of scene mode).",
            inputs=[
                SketchStrokes.Input(
                    "background",
                    optional=True,
                    tooltip="The background layer's sketch (Optimize Sketch on Split Scene Layers' background).",
                ),
                SketchStrokes.Input(
                    "foreground",
                    optional=True,
                    tooltip="The foreground layer's sketch (Optimize Sketch on Split Scene Layers' foreground).",
                ),
            ],
            outputs=[
                SketchStrokes.Output(
                    "layered",
                    display_name="strokes",
                    tooltip="One sketch per picture holding both layers' strokes, each labelled with its layer.",
                ),
                io.Image.Output("image", display_name="image", tooltip="The combined sketch(es) drawn on white."),
            ],
        )

    @classmethod
    def execute(cls, background=None, foreground=None):
        from clipasso.scene import combine_layers
        from clipasso.strokes import StrokeError, Strokes

        given = [(n, v) for n, v in (("background", background), ("foreground", foreground)) if v is not None]
        if not given:
            raise NodeInputError("connect the background's or the foreground's strokes (or both) to combine them")
        layers = {n: _one_per_picture(strokes_or_error(v, n), n) for n, v in given}
        counts = {n: len(v) for n, v in layers.items()}
        if len(set(counts.values())) > 1:
            raise NodeInputError(
                "the layers sketch different numbers of pictures ("
                + ", ".join(f"{n}: {c}" for n, c in counts.items())
                + "); split, place and optimise both layers from the same picture batch"
            )
        try:
            pictures = range(next(iter(counts.values())))
            joined = [combine_layers([(n, parts[i]) for n, parts in layers.items()]) for i in pictures]
            strokes = Strokes.concat(joined).cpu()
        except StrokeError as exc:
            raise NodeInputError(
                f"the layers cannot be combined: {exc}. Initialise both layers with the same canvas and segments "
                "(Initialize Strokes)"
            ) from None
        image, _ = render_to_comfy(strokes)
        return io.NodeOutput(strokes, image)


NODES = [SplitSceneLayers, CombineSketchLayers]
