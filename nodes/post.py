"""The post stage: Select Best Sketch (best of N, one winner per picture), Auto Abstraction (the sketch
chooses its stroke count) and Drawing Order (strokes one after another).

Auto Abstraction and Drawing Order work on one sketch (the lowest-loss candidate when given several)
against the picture it was optimised for, measure with exactly the loss Optimize Sketch optimised
(`nodes.inputs.loop_config`), and leave inference mode like the optimiser node (pruning re-optimises).
The engine is `clipasso.post`.
"""

from __future__ import annotations

import gc

import torch
from comfy_api.latest import io

from clipasso.settings import DEFAULT_FIDELITY

from .common import (
    CATEGORY,
    ClipassoModelsType,
    NodeInputError,
    SketchStrokes,
    check_interrupted,
    chw_to_images,
    free_memory,
    images_to_chw,
    picture_on_canvas,
    strokes_or_error,
)
from .inputs import (
    NODE_PRESET,
    loop_config,
    loop_inputs,
    preset_input,
    setting_input,
    vit_block_input,
    widget_default,
)
from .output import render_to_comfy


class SelectBestSketch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoSelectBest",
            display_name="Select Best Sketch (CLIPasso)",
            category=CATEGORY,
            description="Keep the candidate (seed) with the lowest CLIPasso loss, one per input picture.",
            inputs=[
                SketchStrokes.Input(
                    "strokes",
                    tooltip="Optimized candidates with their losses (from Optimize "
                    "Sketch). With several pictures, the best of each is kept.",
                ),
            ],
            outputs=[
                SketchStrokes.Output("best", display_name="best", tooltip="The winning sketch (one per picture)."),
                io.Image.Output(
                    "image", display_name="image", tooltip="The winning sketch(es) drawn on white at canvas size."
                ),
                io.Int.Output(
                    "index",
                    display_name="index",
                    tooltip="Index of the winner among the candidates (of the first picture).",
                ),
                io.Float.Output(
                    "loss", display_name="loss", tooltip="Loss of the winner (of the first picture); lower is better."
                ),
            ],
        )

    @classmethod
    def execute(cls, strokes):
        from clipasso.post.select import select_best
        from clipasso.strokes import Strokes

        strokes = strokes_or_error(strokes)
        if strokes.losses is None:
            raise NodeInputError(
                "these strokes carry no losses, so there is nothing to compare; connect the "
                "output of Optimize Sketch (CLIPasso)"
            )
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


def _stop_when_cancelled() -> bool:
    check_interrupted()
    return False


def _grow_inputs():
    """Inputs of the grow method; optional with defaults that keep older workflows pruning as before."""
    return [
        setting_input("method", optional=True),
        setting_input(
            "start_strokes",
            optional=True,
            unset=0,
            low=0,
            tooltip="grow: how many of the connected strokes to start from (their first ones); 0 = all "
            "of them. Connect a small optimised sketch (e.g. 2 strokes).",
        ),
        setting_input(
            "max_strokes",
            optional=True,
            default=2 * widget_default("strokes"),
            tooltip="grow: the most strokes growing may reach.",
        ),
        setting_input("grow_iterations", optional=True),
        setting_input("min_gain", optional=True),
    ]


# inputs Optimize Sketch has that these nodes gained later (after their older inputs), so that they
# measure with exactly the loss that optimised the sketch (nodes.inputs.loop_config)
ABSTRACTION_EXTRA = (
    "geometric_weight",
    "augmentations",
    "text",
    "text_weight",
    "optimize_width",
    "optimize_opacity",
    "color_from_image",
    "optimize_color",
    "pen_width",
)
ORDER_EXTRA = ("geometric_weight", "text", "text_weight", "pen_width")


def _one_target(image, strokes):
    pictures = images_to_chw(image)
    if len(pictures) != 1:
        raise NodeInputError(
            f"'image' holds {len(pictures)} pictures; this node works on one sketch of one picture "
            "(pick one with core's image batch nodes)"
        )
    if strokes.height != strokes.width:
        raise NodeInputError(
            f"the strokes' canvas is {strokes.height}x{strokes.width}; CLIPasso sketches on a square canvas"
        )
    return picture_on_canvas(pictures[0], strokes.height)


def _chart_image(pil):
    import numpy as np

    arr = torch.from_numpy(np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0)
    return chw_to_images(arr.permute(2, 0, 1).unsqueeze(0))


class AutoAbstraction(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoAutoAbstraction",
            display_name="Auto Abstraction (CLIPasso)",
            category=CATEGORY,
            description="Let the sketch choose its own stroke count. prune (default): starting from a sketch "
            "optimised with a generous number of strokes, remove the least useful stroke (the one whose "
            "absence raises the loss least), re-optimise briefly, and repeat; keep the fewest strokes "
            "that still reach the fidelity asked for. grow: start from the connected strokes (a few) "
            "and add one stroke at a time where ink lowers the loss most, re-optimising all of them, "
            "until new strokes stop paying or max_strokes is reached; fidelity is then relative to the "
            "best loss reached, and the strokes come out in the order they were added. Also outputs "
            "the loss-versus-strokes curve.",
            inputs=[
                ClipassoModelsType.Input(
                    "models",
                    optional=True,
                    tooltip="From Load CLIPasso Models; its loss encoder measures the sketches "
                    "(use the same as for Optimize Sketch). Not needed with loss 'trace'.",
                ),
                io.Image.Input("image", tooltip="The picture the strokes were optimised against (one picture)."),
                SketchStrokes.Input(
                    "strokes",
                    tooltip="An optimised sketch with a generous stroke count (e.g. 32); "
                    "with several candidates the lowest-loss one is used.",
                ),
                setting_input(
                    "fidelity",
                    default=DEFAULT_FIDELITY,
                    low=0.01,
                    tooltip="Share of the full sketch's loss improvement over an empty canvas to keep: "
                    "1.0 keeps its quality, 0.5 allows a much more abstract sketch.",
                ),
                setting_input("prune_iterations"),
                io.Boolean.Input(
                    "full_curve",
                    default=False,
                    tooltip="Keep pruning down to one stroke (grow: keep growing to max_strokes) to "
                    "draw the whole curve (slower); off stops at the first count below the "
                    "fidelity (grow: when new strokes stop paying).",
                ),
                preset_input("Optimiser settings of the re-optimisations (as in Optimize Sketch)."),
                setting_input("learning_rate"),
                setting_input("semantic_weight"),
            ]
            + loop_inputs(("loss", "trace_weight"))
            + _grow_inputs()
            + loop_inputs(ABSTRACTION_EXTRA)
            + [vit_block_input()],  # last: saved workflows keep their widget order
            outputs=[
                SketchStrokes.Output(
                    "chosen", display_name="strokes", tooltip="The sketch with the chosen stroke count."
                ),
                io.Image.Output("chosen_image", display_name="image", tooltip="The chosen sketch drawn on white."),
                io.Int.Output("count", display_name="count", tooltip="The stroke count chosen."),
                io.Image.Output(
                    "curve_plot",
                    display_name="curve",
                    tooltip="Loss versus stroke count, chosen count marked, empty canvas dashed.",
                ),
                io.String.Output(
                    "curve_text",
                    display_name="curve_json",
                    tooltip="The curve as JSON: per stroke count its loss and fidelity.",
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        models=None,
        image=None,
        strokes=None,
        fidelity=DEFAULT_FIDELITY,
        full_curve=False,
        preset=NODE_PRESET,
        method=None,
        start_strokes=0,
        max_strokes=None,
        **widgets,
    ):
        import comfy.utils
        from clipasso.post.abstraction import abstract
        from clipasso.output.plots import abstraction_chart

        strokes = strokes_or_error(strokes)
        method = method or widget_default("method")
        max_strokes = 2 * widget_default("strokes") if max_strokes is None else max_strokes
        prune_iterations = widgets.pop("prune_iterations", widget_default("prune_iterations"))
        grow_iterations = widgets.pop("grow_iterations", widget_default("grow_iterations"))
        min_gain = widgets.pop("min_gain", widget_default("min_gain"))
        first = None if int(start_strokes) <= 0 else int(start_strokes)  # 0: all the connected strokes
        begin = strokes.num_strokes if first is None else min(first, strokes.num_strokes)
        encoder, device, config = loop_config(models, preset, **widgets)
        if method == "grow":
            bar = comfy.utils.ProgressBar(max(1, int(max_strokes) - begin))
            progress = lambda k, loss, s: bar.update_absolute(k - begin)  # noqa: E731
        else:
            bar = comfy.utils.ProgressBar(max(1, strokes.num_strokes - 1))
            progress = lambda k, loss, s: bar.update_absolute(strokes.num_strokes - k)  # noqa: E731
        try:
            with torch.inference_mode(False), torch.enable_grad():
                target = _one_target(image, strokes)
                start = strokes.detach()
                result = abstract(
                    start,
                    target,
                    encoder,
                    config,
                    fidelity=float(fidelity),
                    start_strokes=first,
                    full_curve=bool(full_curve),
                    device=device,
                    should_stop=_stop_when_cancelled,
                    callback=progress,
                    abstraction_method=method,
                    max_strokes=int(max_strokes),
                    prune_iterations=int(prune_iterations),
                    grow_iterations=int(grow_iterations),
                    min_gain=float(min_gain),
                )
                chosen = result.strokes.cpu()  # fresh tensors made outside inference mode
            rendered, _ = render_to_comfy(chosen)
            chart = _chart_image(abstraction_chart(result))
        finally:
            gc.collect()
            free_memory()
        return io.NodeOutput(chosen, rendered, int(result.count), chart, result.to_json())


class DrawingOrder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoDrawingOrder",
            display_name="Drawing Order (CLIPasso)",
            category=CATEGORY,
            description="Order the strokes so that every prefix is the best sketch of its size (greedy: each next "
            "stroke is the one that lowers the loss most). Outputs the ordered strokes, the drawing "
            "being made stroke by stroke as an image batch (video frames for other nodes), the loss "
            "of each prefix, and an animated SVG.",
            inputs=[
                ClipassoModelsType.Input(
                    "models",
                    optional=True,
                    tooltip="From Load CLIPasso Models; its loss encoder measures each prefix. "
                    "Not needed with loss 'trace'.",
                ),
                io.Image.Input("image", tooltip="The picture the strokes were optimised against (one picture)."),
                SketchStrokes.Input(
                    "strokes", tooltip="The sketch to order; with several candidates the lowest-loss one is used."
                ),
                io.Int.Input(
                    "frame_size",
                    default=0,
                    min=0,
                    max=4096,
                    tooltip="Side of the frames in pixels; 0 keeps the sketch's canvas size. The drawing "
                    "is vector, so any size is sharp.",
                ),
                io.Boolean.Input(
                    "include_blank",
                    default=True,
                    tooltip="Start the frames with the empty canvas (strokes + 1 frames); off: one frame per stroke.",
                ),
                io.Float.Input(
                    "stroke_seconds",
                    default=0.4,
                    min=0.01,
                    max=10.0,
                    step=0.01,
                    tooltip="Time each stroke takes to draw in the animated SVG.",
                ),
                setting_input("semantic_weight"),
            ]
            + loop_inputs(("loss", "trace_weight"))
            + loop_inputs(ORDER_EXTRA)
            + [vit_block_input()],  # last: saved workflows keep their widget order
            outputs=[
                SketchStrokes.Output(
                    "ordered",
                    display_name="strokes",
                    tooltip="The same strokes in drawing order (Save SVG writes them in that order).",
                ),
                io.Image.Output(
                    "frames",
                    display_name="frames",
                    tooltip="The drawing being made: frame k shows the first k strokes.",
                ),
                io.Image.Output("curve_plot", display_name="curve", tooltip="Loss of each prefix (strokes drawn)."),
                io.String.Output(
                    "animated_svg",
                    display_name="animated_svg",
                    tooltip="SVG text whose strokes are drawn one after another (SMIL animation); "
                    "viewers without animation show the finished sketch.",
                ),
                io.String.Output(
                    "curve_text",
                    display_name="curve_json",
                    tooltip="The order and the loss after each prefix, as JSON.",
                ),
            ],
        )

    @classmethod
    def execute(
        cls, models=None, image=None, strokes=None, frame_size=0, include_blank=True, stroke_seconds=0.4, **widgets
    ):
        import comfy.utils
        from clipasso.output.animation import animated_svg, drawing_frames
        from clipasso.post.order import greedy_order, order_json
        from clipasso.output.plots import order_chart

        strokes = strokes_or_error(strokes)
        encoder, device, config = loop_config(models, NODE_PRESET, **widgets)
        bar = comfy.utils.ProgressBar(max(1, strokes.num_strokes))
        try:
            with torch.inference_mode(False), torch.no_grad():
                target = _one_target(image, strokes)
                result = greedy_order(
                    strokes.detach(),
                    target,
                    encoder,
                    config,
                    device=device,
                    should_stop=_stop_when_cancelled,
                    callback=lambda pos, stroke, loss: bar.update_absolute(pos + 1),
                )
                ordered = result.strokes.cpu()
                size = None if int(frame_size) <= 0 else (int(frame_size), int(frame_size))
                frames = chw_to_images(drawing_frames(ordered, size=size, include_blank=bool(include_blank)))
            chart = _chart_image(order_chart(result))
            svg = animated_svg(ordered, stroke_seconds=float(stroke_seconds))
        finally:
            gc.collect()
            free_memory()
        return io.NodeOutput(ordered, frames, chart, svg, order_json(result))


NODES = [SelectBestSketch, AutoAbstraction, DrawingOrder]
