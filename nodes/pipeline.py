"""The whole pipeline in one node: CLIPasso Sketch (`clipasso.pipeline.sketch` for every picture of a batch)."""
from __future__ import annotations

import gc

import torch
from comfy_api.latest import io

from .common import CATEGORY, NodeInputError, SketchStrokes, compute_device, free_memory, images_to_chw, models_dirs
from .inputs import LOOP_WIDGETS, NODE_PRESET, loop_inputs, preset_input, setting_input, settings_overrides
from .optimize import _discard_cancelled, _Progress, _stop_when_cancelled, cancel_requested
from .output import render_to_comfy

# the one-box node's optional inputs after its required ones, in the order they were added (older first, so
# saved workflows keep their values): the features, then the canvas and framing, then the loss and where
# strokes start (which together make a run that needs no CLIP weights: loss trace, saliency mask)
ONE_BOX_WIDGETS = (tuple(n for n in LOOP_WIDGETS if n not in ("loss", "trace_weight")) + ("canvas", "framing")
                   + ("loss", "trace_weight", "saliency"))


class CLIPassoSketch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        from .models import LOSS_MODELS, SALIENCY_MODELS, _options

        return io.Schema(
            node_id="CLIPassoSketch",
            display_name="CLIPasso Sketch",
            category=CATEGORY,
            description="The whole CLIPasso pipeline in one node: remove the background, find the salient parts, "
                        "place strokes, optimise every seed against CLIP and keep the best. Each picture of a batch "
                        "is sketched on its own. Without CLIP weights: loss 'trace' with saliency 'mask' (or "
                        "'none') needs no model but the bundled u2netp. Cancel discards the run (no outputs, "
                        "nothing saved); the last preview shows the best sketch reached.",
            inputs=[
                io.Image.Input("image", tooltip="Picture(s) of an object; every picture of a batch gets a sketch."),
                preset_input(),
                setting_input("strokes"),
                setting_input("seeds"),
                setting_input("seed", control_after_generate=True),
                setting_input("iterations"),
                setting_input("remove_background"),
                setting_input("loss_model", options=_options(LOSS_MODELS)),
                setting_input("saliency_model", options=_options(SALIENCY_MODELS)),
                setting_input("allow_download"),
                *loop_inputs(ONE_BOX_WIDGETS),
            ],
            outputs=[
                SketchStrokes.Output("sketch", display_name="strokes", tooltip="The winning sketch of each picture."),
                io.Image.Output("sketch_image", display_name="image", tooltip="The sketch(es) drawn on white."),
                io.Float.Output("winner_loss", display_name="loss", tooltip="Loss of the (first) winner; lower is better."),
            ],
        )

    @classmethod
    def execute(cls, image, preset=NODE_PRESET, **widgets):
        from clipasso.pipeline import sketch
        from clipasso.settings import SettingsError, SketchSettings
        from clipasso.strokes import Strokes

        try:
            settings = SketchSettings.from_preset(preset, **settings_overrides(**widgets), models_dir=models_dirs(),
                                                  device=str(compute_device())).validate()
        except SettingsError as exc:
            raise NodeInputError(str(exc)) from None
        total_its = settings.iterations
        progress = _Progress(total_its)

        def run_all():
            winners = []
            with torch.inference_mode(False), torch.enable_grad():
                pictures = images_to_chw(image)
                progress.total = progress.bar.total = max(1, total_its * len(pictures))
                for i, pic in enumerate(pictures):
                    if cancel_requested():
                        break
                    progress.offset = i * total_its
                    result = sketch(pic, settings, callback=progress.callback, should_stop=_stop_when_cancelled)
                    winners.append(result.strokes)
                    del result
            return Strokes.concat(winners).cpu() if winners else None

        best = None
        try:
            best = run_all()
            _discard_cancelled(progress, best)
            rendered, _ = render_to_comfy(best)
        except BaseException:
            best = None
            raise
        finally:
            gc.collect()
            free_memory()
        return io.NodeOutput(best, rendered, float(best.losses[0]))




NODES = [CLIPassoSketch]
